"""Load the causal language model and its tokenizer: a model folder, a .gguf file or a hub id.

What the user gave is checked before transformers sees it, so that a legacy GGML file, a `.bin` that
is no model, a folder without config.json, a model that needs its own code, or a hub id without a
network each get a message that says what to give instead (not "not a valid JSON file").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import UserError

GGUF_MAGIC = b"GGUF"
# Legacy llama.cpp formats (ggml, ggmf, ggjt, ggla, ggsn), as written on little- and big-endian machines.
GGML_MAGICS = {m for name in (b"ggml", b"ggmf", b"ggjt", b"ggla", b"ggsn") for m in (name, name[::-1])}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class ModelSource:
    kind: str  # folder | gguf | hub
    location: str  # the folder, the hub id, or the .gguf file's folder
    gguf_file: str | None = None


def _is_image_checkpoint(path: Path) -> bool:
    """Whether a file's safetensors header names a Stable Diffusion UNet (`model.diffusion_model.*`)."""
    from ..kohya.read import safetensors_header
    from ..families.stable_diffusion import UNET_PREFIX

    try:
        shapes, _ = safetensors_header(path, "file")
    except UserError:
        return False
    return any(key.startswith(UNET_PREFIX) for key in shapes)


def classify_base_model(value: str) -> ModelSource:
    """What `base_model` names, or a UserError saying what to give instead."""
    path = Path(value).expanduser()
    if path.is_file():
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic == GGUF_MAGIC:
            return ModelSource("gguf", str(path.parent), path.name)
        if magic in GGML_MAGICS:
            raise UserError(f"base_model {path} is a legacy GGML file (llama.cpp's format before GGUF). It cannot be "
                            "trained: give the original Hugging Face model folder, or convert the file to GGUF with "
                            "llama.cpp's convert_llama_ggml_to_gguf.py and give the .gguf file.")
        if _is_image_checkpoint(path):
            raise UserError(f"base_model {path} is a Stable Diffusion checkpoint (an image model): train image LoRAs "
                            f"on it with task_type: image (`lora_train train`), or give a language model here.")
        raise UserError(f"base_model {path} is a file but not a model that can be trained here: give the Hugging "
                        "Face model folder that holds it (with config.json and the tokenizer), or a .gguf file.")
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", str(path))
        if (path / "model_index.json").is_file():
            raise UserError(f"base_model {path} is a diffusers pipeline folder (an image model): train image LoRAs "
                            "on it with task_type: image (`lora_train train`), or give a language model here.")
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f" It holds {', '.join(ggufs)}: give that .gguf file as base_model." if ggufs else ""
        raise UserError(f"base_model {path} has no config.json, so it is not a Hugging Face model folder.{hint} Give "
                        "the folder that holds config.json, the weights and the tokenizer files.")
    if _HUB_ID.match(value) and not value.startswith((".", "~")):
        return ModelSource("hub", value)
    raise UserError(f"base_model {value} does not exist. Give a Hugging Face model folder, a .gguf file, or a hub "
                    "id such as Qwen/Qwen2.5-0.5B-Instruct.")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on the CPU."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(load_in_4bit: bool, load_in_8bit: bool, compute_dtype: torch.dtype, device: torch.device):
    """A BitsAndBytesConfig (QLoRA's NF4 for 4-bit), or None; a UserError off an NVIDIA GPU."""
    if not (load_in_4bit or load_in_8bit):
        return None
    if device.type != "cuda":
        raise UserError(f"load_in_{'4' if load_in_4bit else '8'}bit needs an NVIDIA GPU (bitsandbytes quantizes "
                        "on CUDA only), and this run is on the CPU. Set load_in_4bit and load_in_8bit to false "
                        "(dtype: fp32 or bf16 trains on the CPU, slowly), or run on a GPU.")
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def _check_remote_code(source: ModelSource, trust_remote_code: bool) -> None:
    if source.kind != "folder" or trust_remote_code:
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        config = json.loads((Path(source.location) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{source.location}/config.json cannot be read ({exc}); the model folder is damaged.") \
            from None
    if "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING:
        raise UserError(f"The model in {source.location} (model_type {config.get('model_type')!r}) needs its own "
                        "Python code, which runs only when you allow it: set trust_remote_code: true if you trust "
                        "this model's source.")


def _pretrained_args(source: ModelSource, trust_remote_code: bool) -> tuple[str, dict]:
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if source.kind != "hub":
        kwargs["local_files_only"] = True
    return source.location, kwargs


def _explain(exc: Exception, source: ModelSource) -> UserError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if source.kind == "hub":
        return UserError(f"Could not get {source.location} from the Hugging Face hub ({text}). This machine may be "
                         "offline or the id may be wrong: download the model elsewhere (e.g. `hf download "
                         f"{source.location} --local-dir DIR`) and give that folder as base_model. (If you meant a "
                         f"local folder: {Path(source.location).resolve()} does not exist.)")
    if source.gguf_file and "architecture" in text:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        readable = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})
        return UserError(f"{source.gguf_file}: {text} transformers reads GGUF files of these architectures only: "
                         f"{', '.join(readable)}. Give the original Hugging Face model folder instead.")
    if "trust_remote_code" in text:
        return UserError(f"The model in {source.location} needs its own Python code: set trust_remote_code: true if "
                         "you trust it.")
    return UserError(f"Could not load the model {source.location}{'/' + source.gguf_file if source.gguf_file else ''}"
                     f" ({type(exc).__name__}: {text}). Check that it is a complete causal language model.")


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    location, kwargs = _pretrained_args(source, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    except Exception as exc:
        raise _explain(exc, source) from None
    if tokenizer.pad_token is None:  # reuse a token the model knows: no new embedding row to train
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise UserError(f"The tokenizer of {source.location} has no pad, eos or unk token; it cannot batch rows.")
    return tokenizer


def load_model(source: ModelSource, dtype: torch.dtype, quantization=None, trust_remote_code: bool = False,
               device: torch.device | None = None):
    """The model, frozen, in `dtype` (quantized when asked)."""
    from transformers import AutoModelForCausalLM

    _check_remote_code(source, trust_remote_code)
    location, kwargs = _pretrained_args(source, trust_remote_code)
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": device.index or 0})
    try:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
    except UserError:
        raise
    except Exception as exc:
        raise _explain(exc, source) from None
    model.requires_grad_(False)
    return model


def load_model_skeleton(source: ModelSource, trust_remote_code: bool = False):
    """The model's modules without weights (on the meta device: instant, no memory), for listing its layers.
    A .gguf file holds no separate config, so it is loaded in full."""
    if source.gguf_file:
        return load_model(source, torch.float32, trust_remote_code=trust_remote_code)
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    _check_remote_code(source, trust_remote_code)
    location, kwargs = _pretrained_args(source, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(location, **kwargs)
        with init_empty_weights():
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _explain(exc, source) from None
