"""Load the Flux transformer: from a BFL single file (its config read from the shapes, `detect`), or from a
diffusers folder's `transformer/`; with `fp8`, its linear weights kept in fp8 (`fp8.py`).

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
from ..families import Family
from ..models.pretrained import load_pretrained
from ..models.weights import empty_model, load_weights, report_mismatch
from .detect import FluxCheckpoint
from .flux_layout import bfl_modules, bfl_names, from_bfl
from .fp8 import fp8_dtype, linear_weights, use_fp8_linears

Transformer = FluxTransformer2DModel | ChromaTransformer2DModel
_ADVICE = "The file does not hold a whole Flux.1 / Chroma transformer: download it again."


def transformer_class(family: Family) -> type:
    return family.parts.transformer_class.load()


def load_bfl_transformer(path: Path, checkpoint: FluxCheckpoint, dtype: torch.dtype, device: torch.device,
                         fp8: bool = False) -> Transformer:
    """The transformer of a BFL-layout file (bare or under `checkpoint.prefix`), on `device` in `dtype` (with
    `fp8`, its linear weights in fp8: `fp8.py`)."""
    what = f"The Flux transformer in {path}"
    model = empty_model(lambda: transformer_class(checkpoint.family)(**checkpoint.config))
    modules = bfl_modules(model.config, chroma=checkpoint.family.parts.distilled_modulation)
    expected = set(bfl_names(modules, checkpoint.prefix))
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        others = tuple(checkpoint.parts.values())
        present = {key for key in handle.keys() if key.startswith(checkpoint.prefix) and not key.startswith(others)}
        if any(key.endswith("scale_weight") or key.endswith("scaled_fp8") for key in handle.keys()):
            raise UserError(f"{what} is a 'scaled' fp8 file (per-tensor scale_weight tensors), which is not read "
                            "yet: use the bf16 / fp16 or the plain fp8_e4m3fn file.")
        report_mismatch(what, _ADVICE, missing=expected - present, unexpected=present - expected)
        shapes = {key: value.shape for key, value in model.state_dict().items()}
        kept = linear_weights(model) if fp8 else set()
        state = {key: part.to(fp8_dtype(part.dtype) if key in kept else dtype)
                 for key, part in from_bfl(handle.get_tensor, modules, shapes, checkpoint.prefix)}
    return _upcasting(load_weights(model, state, what, _ADVICE), fp8, dtype)


def _upcasting(model: Transformer, fp8: bool, dtype: torch.dtype) -> Transformer:
    if fp8:
        use_fp8_linears(model, dtype)
    return model


def load_folder_transformer(folder: Path, family: Family, dtype: torch.dtype, device: torch.device,
                            fp8: bool = False) -> Transformer:
    """The folder's transformer on `device` in `dtype` (with `fp8`, its linear weights then cast to fp8)."""
    model = load_pretrained(transformer_class(family), folder, "transformer", dtype, f"The diffusers folder {folder}")
    if fp8:
        for key in linear_weights(model):
            module = model.get_submodule(key.removesuffix(".weight"))
            module.weight.data = module.weight.data.to(fp8_dtype(module.weight.dtype))
    return _upcasting(model.to(device), fp8, dtype)
