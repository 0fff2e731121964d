"""`from_pretrained` for one part of a diffusers folder: offline, strict, with plain-words errors.

transformers fills missing weights with random ones and only warns; here any missing,
unexpected or misshapen weight is a UserError, as for single-file checkpoints.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..core.errors import UserError
from .weights import report_mismatch

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_WEIGHT_STEMS = ("diffusion_pytorch_model", "model", "pytorch_model")


def require_part(folder: Path, subfolder: str, what: str) -> Path:
    """`folder/subfolder`, checked to hold a config and weights."""
    part = folder / subfolder if subfolder else folder
    if not (part / "config.json").is_file():
        raise UserError(f"{what} is missing {part / 'config.json'}. Copy the whole diffusers folder again.")
    if not any(file.name.endswith(_WEIGHT_SUFFIXES) for file in part.iterdir()):
        raise UserError(f"{what} has no weights in {part} (diffusion_pytorch_model.safetensors or model.safetensors). "
                        "Copy the whole diffusers folder again.")
    return part


def weights_variant(part: Path) -> str | None:
    """`fp16` for a part that holds only variant weights (`diffusion_pytorch_model.fp16.safetensors`, as
    `from_pretrained(..., variant="fp16")` downloads them); None when plain weights are there."""
    variants = []
    for file in part.iterdir():
        stem, *middle, suffix = file.name.split(".")
        if stem.split("-")[0] not in _WEIGHT_STEMS:
            continue
        if not middle or middle == ["safetensors", "index"] or middle == ["bin", "index"]:
            return None
        if suffix in ("safetensors", "bin"):
            variants.append(middle[0])
    return min(variants) if variants else None


def load_pretrained(model_class: type, folder: Path, subfolder: str, dtype: torch.dtype, what: str):
    """One part of a diffusers folder (or a model folder itself, `subfolder=""`), frozen, in eval mode."""
    part = require_part(folder, subfolder, what)
    try:
        model, info = model_class.from_pretrained(str(part), local_files_only=True, torch_dtype=dtype,
                                                  output_loading_info=True, variant=weights_variant(part))
    except pickle.UnpicklingError:  # a .bin that needs more than tensors: loaded with weights_only, refused
        raise UserError(f"{what}: {part} holds a pickle that would run code when loaded; it was not loaded. Use "
                        "a folder with .safetensors weights.") from None
    except (OSError, ValueError, RuntimeError) as error:
        raise UserError(f"{what}: {part} could not be loaded ({error}).") from error
    report_mismatch(f"{what} ({part})", "Copy the whole diffusers folder again.",
                    missing=info.get("missing_keys", []), unexpected=info.get("unexpected_keys", []),
                    **{"with another shape": [str(item[0]) for item in info.get("mismatched_keys", [])]})
    return model.eval().requires_grad_(False)
