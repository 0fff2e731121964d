"""A loaded base model: its diffusers parts, its family, and the names LoRA files and the WebUI use for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTokenizer

from ..families import Family, family


@dataclass
class BaseModel:
    """SD1 / SD2 / SDXL in diffusers classes, frozen and in eval mode, as loaded by `load_base_model`.

    `text_encoders` / `tokenizers` are in pipeline order (SDXL: CLIP-L, then OpenCLIP-bigG with
    projection). `noise_scheduler` is a DDPMScheduler for training with the model's prediction type.
    A training run may release the VAE and text encoders (None and []) while it does not use them;
    `load_encoders(with_vae=..., with_text_encoders=...)` reads them from the model's files again, as they
    were first loaded, and returns (vae or None, text_encoders or []).
    """

    arch: str  # the family's id: sd1 | sd2 | sdxl
    v_prediction: bool
    unet: UNet2DConditionModel
    vae: AutoencoderKL | None
    text_encoders: list
    tokenizers: list[CLIPTokenizer]
    noise_scheduler: DDPMScheduler
    name: str  # the checkpoint's file stem (or folder name)
    path: Path
    load_encoders: Callable[..., tuple[AutoencoderKL | None, list]] | None = None

    @property
    def family(self) -> Family:
        return family(self.arch)

    @property
    def base_model_version(self) -> str:
        """`ss_base_model_version`: sd_v1 | sd_v2 | sd_v2_v | sdxl_base_v1-0 (the WebUI filters LoRAs by it)."""
        return self.family.names.version(self.v_prediction)

    @property
    def modelspec_architecture(self) -> str:
        """`modelspec.architecture` of a LoRA trained on this model."""
        return self.family.names.modelspec_architecture(self.v_prediction)

    @property
    def sd_version(self) -> str:
        """The WebUI card's "sd version": SD1 | SD2 | SDXL."""
        return self.family.names.label
