"""The WD v3 taggers (vit / swinv2 / convnext / eva02) on onnxruntime.

Preprocessing is the taggers' own (SmilingWolf's app): the RGB image (transparency already on
white) is pasted in the middle of a white square, resized with bicubic filtering to the size the
ONNX input declares, and fed as float32 0-255 in BGR order, NHWC. The output row is already
probabilities, turned into tags by `tags.select`. The CUDA provider is used when asked for and
available; when it is not, the reason is said (the CPU package installed, both packages installed
together, or CUDA libraries that failed to load).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lora_train.caption.model_source import ModelFiles
from lora_train.caption.tags import TagList, TagOptions, read_selected_tags, select
from lora_train.core.errors import UserError
from lora_train.core.events import EventSink, make_event
from lora_train.core.packages import installed

TAGGER_FILES = ModelFiles(required=("model.onnx", "selected_tags.csv"), download=("model.onnx", "selected_tags.csv"))
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def prepare(image: Image.Image, size: int) -> np.ndarray:
    """One HxWx3 float32 BGR array: padded white to a square, resized to `size`."""
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(square, dtype=np.float32)[:, :, ::-1]


class WdTagger:
    """A loaded tagger: `tags(images)` gives each image's tags."""

    def __init__(self, model: Path, options: TagOptions, device: str, emit: EventSink):
        onnx_path, csv_path = _files(model)
        self.options = options
        self.tag_list: TagList = read_selected_tags(csv_path)
        self.session, provider_note, fell_back = _session(onnx_path, device)
        emit(make_event("log", level="warning" if fell_back else "info", message=provider_note))
        self.input_name, self.size = _input_spec(self.session, onnx_path)
        outputs = self.session.get_outputs()[0].shape[-1]
        if isinstance(outputs, int) and outputs != len(self.tag_list.names):
            raise UserError(f"{onnx_path} gives {outputs} outputs but {csv_path} lists {len(self.tag_list.names)} "
                            "tags: the tag list belongs to another model. Put the model's own selected_tags.csv "
                            "beside it.")

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        batch = np.stack([prepare(image, self.size) for image in images])
        return self.session.run(None, {self.input_name: batch})[0]

    def tags(self, images: list[Image.Image]) -> list[list[str]]:
        return [select(row, self.tag_list, self.options) for row in self.probabilities(images)]


def _files(model: Path) -> tuple[Path, Path]:
    if model.is_file() and model.suffix.lower() != ".onnx":
        raise UserError(f"{model} is not a WD tagger's model.onnx (it is a {model.suffix or 'suffix-less'} file): give "
                        "the tagger's folder (model.onnx and selected_tags.csv) or its model.onnx; --method vlm "
                        "takes an image-text model folder, --method clip an open_clip one.")
    onnx_path = model if model.is_file() else model / "model.onnx"
    csv_path = onnx_path.with_name("selected_tags.csv")
    missing = [p.name for p in (onnx_path, csv_path) if not p.is_file()]
    if missing:
        raise UserError(f"The tagger in {onnx_path.parent} lacks {' and '.join(missing)}: a WD tagger is "
                        "model.onnx with its selected_tags.csv, side by side (download both from the model's page).")
    return onnx_path, csv_path


def _session(onnx_path: Path, device: str):
    """(session, which provider runs and why, whether that is a fall-back from the GPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("The WD tagger needs onnxruntime: install it into the trainer's venv (`pip install "
                        "onnxruntime`, or `onnxruntime-gpu` alone for a GPU).") from None
    ort.set_default_logger_severity(3)
    want_cuda = device in ("auto", "cuda")
    providers = [_CUDA, _CPU] if want_cuda and _CUDA in ort.get_available_providers() else [_CPU]
    try:
        session = ort.InferenceSession(str(onnx_path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own classes for a file that is not a model
        raise UserError(f"{onnx_path} is not an ONNX model onnxruntime can load ({str(exc).splitlines()[0][:200]}). "
                        "Download the tagger's model.onnx again.") from None
    if session.get_providers()[0] == _CUDA:
        return session, "WD tagger runs on the GPU (onnxruntime CUDAExecutionProvider)", False
    why = _no_cuda_reason(ort) if want_cuda else "asked for the CPU"
    # a fall-back is a warning when the GPU was asked for, or when the CUDA provider exists but failed to load
    fell_back = device == "cuda" or _CUDA in providers
    return session, f"WD tagger runs on the CPU ({why})", fell_back


def _no_cuda_reason(ort) -> str:
    present = {name for name in ("onnxruntime", "onnxruntime-gpu") if installed(name)}
    if present == {"onnxruntime", "onnxruntime-gpu"}:
        return ("onnxruntime and onnxruntime-gpu are both installed and the CPU one hides the GPU: uninstall both, "
                "then install onnxruntime-gpu alone")
    if _CUDA in ort.get_available_providers():
        return "the CUDA provider failed to load: the CUDA/cuDNN libraries this onnxruntime-gpu needs were not found"
    if "onnxruntime-gpu" not in present:
        return "the onnxruntime package is the CPU build; install onnxruntime-gpu instead of it for a GPU"
    return "onnxruntime-gpu found no CUDA device"


def _input_spec(session, onnx_path: Path) -> tuple[str, int]:
    """(input name, square size) of an NHWC 3-channel image input; anything else is not a tagger."""
    inputs = session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else []
    if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        raise UserError(f"{onnx_path} is not a WD tagger: its input is {[(i.name, i.shape) for i in inputs]}, a WD "
                        "tagger takes one [batch, size, size, 3] image. Use a SmilingWolf wd-*-tagger-v3 model.onnx.")
    return inputs[0].name, int(shape[1])
