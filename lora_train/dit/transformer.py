"""Load the Flux transformer: from a BFL single file (its config read from the shapes, `detect`), or from a
diffusers folder's `transformer/`.

A single file is read tensor by tensor from the memory-mapped safetensors straight onto the training
device, cast as it is read; fused tensors (`qkv`, `linear1`) are split into row views, never copied, so the
model is in memory once. Every tensor of the file under the transformer's prefix must be one the model
has, and every weight of the model must be in the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ChromaTransformer2DModel, FluxTransformer2DModel
from safetensors import safe_open

from ..core.errors import UserError
from ..models.pretrained import load_pretrained
from ..models.weights import empty_model, load_weights, report_mismatch
from .detect import FluxCheckpoint
from .flux_layout import bfl_modules, bfl_names, from_bfl

Transformer = FluxTransformer2DModel | ChromaTransformer2DModel
_ADVICE = "The file does not hold a whole Flux.1 / Chroma transformer: download it again."


def transformer_class(family: str) -> type:
    return ChromaTransformer2DModel if family == "chroma" else FluxTransformer2DModel


def load_bfl_transformer(path: Path, checkpoint: FluxCheckpoint, dtype: torch.dtype, device: torch.device
                         ) -> Transformer:
    """The transformer of a BFL-layout file (bare or under `checkpoint.prefix`), on `device` in `dtype`."""
    what = f"The Flux transformer in {path}"
    model = empty_model(lambda: transformer_class(checkpoint.family)(**checkpoint.config))
    modules = bfl_modules(model.config, chroma=checkpoint.family == "chroma")
    expected = set(bfl_names(modules, checkpoint.prefix))
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        others = tuple(checkpoint.parts.values())
        present = {key for key in handle.keys() if key.startswith(checkpoint.prefix) and not key.startswith(others)}
        if any(key.endswith("scale_weight") or key.endswith("scaled_fp8") for key in handle.keys()):
            raise UserError(f"{what} is a 'scaled' fp8 file (per-tensor scale_weight tensors), which is not read "
                            "yet: use the bf16 / fp16 or the plain fp8_e4m3fn file.")
        report_mismatch(what, _ADVICE, missing=expected - present, unexpected=present - expected)
        shapes = {key: value.shape for key, value in model.state_dict().items()}
        state = dict(from_bfl(lambda name: handle.get_tensor(name).to(dtype), modules, shapes, checkpoint.prefix))
    return load_weights(model, state, what, _ADVICE)


def load_folder_transformer(folder: Path, family: str, dtype: torch.dtype, device: torch.device) -> Transformer:
    what = f"The diffusers folder {folder}"
    return load_pretrained(transformer_class(family), folder, "transformer", dtype, what).to(device)
