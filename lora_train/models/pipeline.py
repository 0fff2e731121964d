"""A diffusers pipeline over a BaseModel's own parts, for sample images: the family's pipeline class."""

from __future__ import annotations

from collections.abc import Sequence

import diffusers
import torch
from diffusers import DiffusionPipeline, EulerDiscreteScheduler

from ..families import family
from .base_model import BaseModel


def pipeline_of(arch: str, unet: torch.nn.Module, vae: torch.nn.Module, text_encoders: Sequence[torch.nn.Module],
                tokenizers: Sequence, scheduler) -> DiffusionPipeline:
    """The family's pipeline class (`folder.pipeline`) over these parts: each text encoder and tokenizer passed
    under its diffusers folder name, with the family's `pipeline_options` (no safety checker, no watermark)."""
    found = family(arch)
    encoders = {}
    for spec, encoder, tokenizer in zip(found.parts.text_encoders, text_encoders, tokenizers):
        encoders.update({spec.subfolder: encoder, spec.tokenizer_subfolder: tokenizer})
    pipeline_class = getattr(diffusers, found.folder.pipeline)
    return pipeline_class(unet=unet, vae=vae, scheduler=scheduler, **encoders, **dict(found.parts.pipeline_options))


def make_pipeline(base: BaseModel, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> DiffusionPipeline:
    """A pipeline sharing the base model's module objects (no copies, Euler sampler on the model's noise
    schedule). Given a device or dtype, the shared modules are moved in place, so a LoRA injected into them
    takes part in sampling."""
    scheduler = EulerDiscreteScheduler.from_config(base.noise_scheduler.config)
    pipeline = pipeline_of(base.arch, base.unet, base.vae, base.text_encoders, base.tokenizers, scheduler)
    pipeline.set_progress_bar_config(disable=True)
    if device is not None or dtype is not None:
        pipeline.to(device=device, dtype=dtype)
    return pipeline
