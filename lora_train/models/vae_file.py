"""A separate VAE, used instead of the checkpoint's own: a single file in the ldm layout (bare, or
under `first_stage_model.` / `vae.`) or the diffusers layout, or a diffusers VAE folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from diffusers import AutoencoderKL

from ..core.errors import UserError
from ..families.stable_diffusion import UNET_PREFIX
from .checkpoint_file import open_checkpoint
from .ldm_parts import vae_state_dict
from .pretrained import load_pretrained
from .weights import empty_model, load_weights

_PREFIXES = ("first_stage_model.", "vae.")
_NOT_WEIGHTS = ("loss.", "model_ema.")  # training leftovers some VAE files carry


def load_vae_file(path: str | Path, config: Mapping[str, Any], dtype: torch.dtype) -> AutoencoderKL:
    """The VAE at `path`, built with `config` (the base model's VAE config) unless it is a folder."""
    path = Path(path)
    what = f"The VAE file {path}"
    if path.is_dir():
        return load_pretrained(AutoencoderKL, path, "", dtype, what)
    checkpoint = open_checkpoint(path)
    keys = checkpoint.meta.keys()
    if any(key.startswith(UNET_PREFIX) for key in keys):
        raise UserError(f"{path} is a full checkpoint, not a VAE. Give it as base model, or give a VAE file as vae.")
    prefix = next((prefix for prefix in _PREFIXES if any(key.startswith(prefix) for key in keys)), "")
    if not any(key.startswith(prefix + "decoder.") for key in keys):
        raise UserError(f"{path} is not a VAE (it has no decoder weights). Give a VAE file such as "
                        "vae-ft-mse-840000-ema-pruned.safetensors or sdxl_vae.safetensors.")
    tensors = checkpoint.read(prefix, dtype, skip=_NOT_WEIGHTS)
    advice = "Use a VAE made for this base model's architecture."
    model = empty_model(lambda: AutoencoderKL.from_config(dict(config)))
    if any(key.startswith(prefix + "encoder.down_blocks.") for key in tensors):  # already diffusers names
        state_dict = {key[len(prefix):]: value for key, value in tensors.items()}
    else:
        state_dict = vae_state_dict(tensors, prefix, config, model, what, advice)
    return load_weights(model, state_dict, what, advice)
