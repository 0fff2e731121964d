"""CLIP ranking with open_clip (the lora-scripts auto-label approach): each image's top-k phrases from a
vocabulary file, kept when their cosine similarity reaches a score. A CoCa model (which has a text
decoder) given no vocabulary writes captions instead (`coca.greedy_captions`).

A model is an open_clip hub folder (`open_clip_config.json` with `model_cfg` and `preprocess_cfg`,
and `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`), or a weights file plus an
architecture name from open_clip's own configs (`--clip-arch ViT-B-32`). The model classes come from
`open_clip_import` (no torchvision needed); images are preprocessed here with PIL and numpy exactly
as open_clip's eval transform does (bicubic resize of the shorter side and centre crop, or a squash,
then the model's mean/std), and text is tokenized with CLIP's BPE vocabulary padded with zeros.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lora_train.caption.model_source import ModelFiles
from lora_train.caption.open_clip_import import open_clip_modules, open_clip_package_dir
from lora_train.core.errors import UserError
from lora_train.core.events import EventSink, make_event
from lora_train.data.captions import decode_text

CLIP_FILES = ModelFiles(required=("open_clip_config.json", "open_clip_model.safetensors|open_clip_pytorch_model.bin"),
                        download=("open_clip_config.json", "open_clip_model.safetensors"),
                        fallback=("open_clip_pytorch_model.bin",))
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipOptions:
    vocabulary: Path | None = None
    top_k: int = 5
    min_score: float = 0.2
    arch: str = ""  # open_clip architecture name, for a bare weights file
    max_new_tokens: int = 30  # CoCa captions


@dataclass(frozen=True)
class Preprocess:
    size: int
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD
    resize_mode: str = "shortest"


def read_vocabulary(path: Path | None, emit: EventSink = lambda event: None) -> list[str]:
    """Phrases, one per line (blank lines and # comments skipped), each once; a file not in UTF-8 is read as
    captions are (`decode_text`), with a warning."""
    if path is None:
        raise UserError("CLIP ranking needs a vocabulary: --vocabulary FILE with one tag or phrase per line (only a "
                        "CoCa model writes captions without one).")
    try:
        text, warning = decode_text(path.read_bytes())
    except OSError as exc:
        raise UserError(f"Cannot read the vocabulary {path} ({exc.strerror or exc}).") from None
    if warning:
        emit(make_event("log", level="warning", message=f"{path}: {warning}"))
    lines = text.splitlines()
    phrases = list(dict.fromkeys(line.strip() for line in lines if line.strip() and not line.startswith("#")))
    if not phrases:
        raise UserError(f"The vocabulary {path} is empty: write one tag or phrase per line.")
    return phrases


def preprocess(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """CHW float32, as open_clip's eval transform makes it."""
    if spec.resize_mode == "squash":
        image = image.resize((spec.size, spec.size), Image.Resampling.BICUBIC)
    else:
        scale = spec.size / min(image.size)
        resized = (max(spec.size, round(image.width * scale)), max(spec.size, round(image.height * scale)))
        image = image.resize(resized, Image.Resampling.BICUBIC)
        left, top = (image.width - spec.size) // 2, (image.height - spec.size) // 2
        image = image.crop((left, top, left + spec.size, top + spec.size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    return ((array - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)).transpose(2, 0, 1)


class ClipRanker:
    """A loaded CLIP model and the encoded vocabulary: `captions(images)` ranks it per image (or, for a CoCa
    model without a vocabulary, generates a caption)."""

    def __init__(self, model: Path, options: ClipOptions, device: str, emit: EventSink = lambda event: None):
        import torch

        from lora_train.models.clip_tokenizer import load_clip_tokenizer

        self.options = options
        self.device = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        model_cfg, self.spec = _config(model, options.arch)
        self.model = _build(model_cfg, _weights(model)).to(self.device).eval()
        self.context_length = model_cfg.get("text_cfg", {}).get("context_length", 77)
        self.tokenizer = load_clip_tokenizer()
        self.generates = options.vocabulary is None and "multimodal_cfg" in model_cfg
        if not self.generates:
            self.vocabulary = read_vocabulary(options.vocabulary, emit)
            self.text_features = self._encode_text(self.vocabulary)

    def captions(self, images: list[Image.Image]) -> list[str]:
        if self.generates:
            from lora_train.caption.coca import greedy_captions

            return greedy_captions(self.model, self._pixels(images), self.tokenizer, self.options.max_new_tokens,
                                   self.context_length)
        return [", ".join(phrases) for phrases in self.phrases(images)]

    def _pixels(self, images: list[Image.Image]):
        import torch

        return torch.from_numpy(np.stack([preprocess(image, self.spec) for image in images])).to(self.device)

    def phrases(self, images: list[Image.Image]) -> list[list[str]]:
        import torch

        pixels = self._pixels(images)
        with torch.inference_mode():
            features = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
        scores = (features @ self.text_features.T).cpu().numpy()
        return [self._top(row) for row in scores]

    def _top(self, scores: np.ndarray) -> list[str]:
        order = np.argsort(-scores, kind="stable")[: self.options.top_k]
        return [self.vocabulary[i] for i in order if scores[i] >= self.options.min_score]

    def _encode_text(self, phrases: list[str]):
        import torch

        tokens = np.zeros((len(phrases), self.context_length), dtype=np.int64)  # open_clip pads with 0
        for row, ids in enumerate(self.tokenizer(phrases, truncation=True, max_length=self.context_length)["input_ids"]):
            tokens[row, : len(ids)] = ids
        with torch.inference_mode():
            features = self.model.encode_text(torch.from_numpy(tokens).to(self.device)).float()
        return torch.nn.functional.normalize(features, dim=-1)


def _config(model: Path, arch: str) -> tuple[dict, Preprocess]:
    if model.is_dir():
        path = model / "open_clip_config.json"
        if not path.is_file():
            raise UserError(f"{model} is not an open_clip model folder (no open_clip_config.json). Give a folder "
                            "with open_clip_config.json and open_clip_model.safetensors, or a weights file with "
                            "--clip-arch.")
        config = json.loads(path.read_text(encoding="utf-8"))
        model_cfg, pre = config.get("model_cfg", {}), config.get("preprocess_cfg", {})
    elif arch:
        path = open_clip_package_dir() / "model_configs" / f"{arch}.json"
        if not path.is_file():
            raise UserError(f"--clip-arch {arch!r} is not an open_clip architecture (see the names in "
                            f"{path.parent}).")
        model_cfg, pre = json.loads(path.read_text(encoding="utf-8")), {}
    else:
        raise UserError(f"{model} is a weights file: name its architecture with --clip-arch (e.g. ViT-B-32), or "
                        "give the model's folder with open_clip_config.json.")
    if model_cfg.get("text_cfg", {}).get("hf_tokenizer_name") or "hf_model_name" in model_cfg.get("text_cfg", {}):
        raise UserError(f"{model} uses a Hugging Face text tower/tokenizer; CLIP ranking supports models with CLIP's "
                        "own tokenizer (OpenAI and LAION ViT / ConvNeXt CLIP models).")
    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    return model_cfg, Preprocess(int(size), tuple(pre.get("mean", OPENAI_MEAN)), tuple(pre.get("std", OPENAI_STD)),
                                 pre.get("resize_mode", "shortest"))


def _weights(model: Path) -> dict:
    import torch

    path = next((model / name for name in _WEIGHTS if (model / name).is_file()), None) if model.is_dir() else model
    if path is None:
        raise UserError(f"{model} holds no weights: expected {' or '.join(_WEIGHTS)}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _build(model_cfg: dict, state: dict):
    model_module, coca_module = open_clip_modules()
    cfg = dict(model_cfg)
    custom_text = cfg.pop("custom_text", False)
    if "multimodal_cfg" in cfg:
        model = coca_module.CoCa(**cfg)
    else:
        model = (model_module.CustomTextCLIP if custom_text else model_module.CLIP)(**cfg)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    missing = model.load_state_dict(state, strict=False).missing_keys
    if missing:
        raise UserError(f"The CLIP weights do not fit the architecture: {len(missing)} tensors missing (e.g. "
                        f"{missing[0]}). Check --clip-arch or the model's open_clip_config.json.")
    return model
