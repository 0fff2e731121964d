"""A diffusers pipeline over a BaseModel's own parts, for sample images."""

from __future__ import annotations

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

from .base_model import BaseModel


def make_pipeline(base: BaseModel, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """A StableDiffusion(XL)Pipeline sharing the base model's module objects (no copies, no safety
    checker, no watermark, Euler sampler on the model's noise schedule). Given a device or dtype,
    the shared modules are moved in place, so a LoRA injected into them takes part in sampling."""
    scheduler = EulerDiscreteScheduler.from_config(base.noise_scheduler.config)
    parts = dict(unet=base.unet, vae=base.vae, scheduler=scheduler, text_encoder=base.text_encoders[0],
                 tokenizer=base.tokenizers[0])
    if base.arch == "sdxl":
        pipeline = StableDiffusionXLPipeline(text_encoder_2=base.text_encoders[1], tokenizer_2=base.tokenizers[1],
                                             add_watermarker=False, **parts)
    else:
        pipeline = StableDiffusionPipeline(safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False, **parts)
    pipeline.set_progress_bar_config(disable=True)
    if device is not None or dtype is not None:
        pipeline.to(device=device, dtype=dtype)
    return pipeline
