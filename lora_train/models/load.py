"""`load_base_model`: the one entry point for SD1 / SD2 / SDXL base models, from any form users have."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import UserError
from .base_model import BaseModel
from .diffusers_folder import load_diffusers_folder
from .prediction import check_prediction_type
from .single_file import load_single_file


def load_base_model(path: str | Path, vae_path: str | Path | None = None, prediction_type: str = "auto",
                    dtype: torch.dtype = torch.float32) -> BaseModel:
    """Load a base model offline: a single-file .safetensors / .ckpt (ldm layout, a `<name>.yaml` beside it
    for non-standard shapes) or a diffusers folder; `vae_path` replaces its VAE; `prediction_type`
    (auto | epsilon | v_prediction) overrides what the files say. Problems raise UserError."""
    check_prediction_type(prediction_type)
    path = Path(path)
    vae = Path(vae_path) if vae_path else None
    if vae is not None and not vae.exists():
        raise UserError(f"VAE file not found: {vae}. Check the path (WebUI VAEs live in models/VAE).")
    if path.is_dir():
        return load_diffusers_folder(path, vae, prediction_type, dtype)
    return load_single_file(path, vae, prediction_type, dtype)
