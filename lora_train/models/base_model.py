"""A loaded base model: its diffusers parts and the names LoRA files and the WebUI use for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTokenizer

# (arch, v_prediction) -> ss_base_model_version, modelspec.architecture, the WebUI's "sd version"
_NAMES = {
    ("sd1", False): ("sd_v1", "stable-diffusion-v1/lora", "SD1"),
    ("sd1", True): ("sd_v1", "stable-diffusion-v1/lora", "SD1"),
    ("sd2", False): ("sd_v2", "stable-diffusion-v2-512/lora", "SD2"),
    ("sd2", True): ("sd_v2_v", "stable-diffusion-v2-768-v/lora", "SD2"),
    ("sdxl", False): ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora", "SDXL"),
    ("sdxl", True): ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora", "SDXL"),
}


@dataclass
class BaseModel:
    """SD1 / SD2 / SDXL in diffusers classes, frozen and in eval mode, as loaded by `load_base_model`.

    `text_encoders` / `tokenizers` are in pipeline order (SDXL: CLIP-L, then OpenCLIP-bigG with
    projection). `noise_scheduler` is a DDPMScheduler for training with the model's prediction type.
    """

    arch: str  # sd1 | sd2 | sdxl
    v_prediction: bool
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoders: list
    tokenizers: list[CLIPTokenizer]
    noise_scheduler: DDPMScheduler
    name: str  # the checkpoint's file stem (or folder name)
    path: Path

    @property
    def base_model_version(self) -> str:
        """`ss_base_model_version`: sd_v1 | sd_v2 | sd_v2_v | sdxl_base_v1-0 (the WebUI filters LoRAs by it)."""
        return _NAMES[self.arch, self.v_prediction][0]

    @property
    def modelspec_architecture(self) -> str:
        """`modelspec.architecture` of a LoRA trained on this model."""
        return _NAMES[self.arch, self.v_prediction][1]

    @property
    def sd_version(self) -> str:
        """The WebUI card's "sd version": SD1 | SD2 | SDXL."""
        return _NAMES[self.arch, self.v_prediction][2]
