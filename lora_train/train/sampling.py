"""Sample images during and after training, from the model as it is being trained.

The pipeline shares the training modules (LoRA layers included), so a sample shows the
LoRA at its current weights. Fixed seeds make samples comparable across steps.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from PIL import Image

from ..models.base_model import BaseModel
from ..models.pipeline import make_pipeline


def sample_prompts(prompts: list[str], trigger_word: str, fallback_caption: str) -> list[str]:
    """The configured prompts, else the trigger word, else the first training caption."""
    if prompts:
        return prompts
    return [trigger_word or fallback_caption or "a picture"]


@dataclass(frozen=True)
class SampleSettings:
    prompts: list[str]
    negative_prompt: str
    seed: int  # of the first prompt's image; the next ones count up from it
    steps: int
    guidance_scale: float
    size: int


@torch.no_grad()
def generate_samples(base: BaseModel, settings: SampleSettings, device: torch.device, autocast) -> list[Image.Image]:
    """One image per prompt; the models' train/eval modes are restored afterwards."""
    pipeline = make_pipeline(base)
    with evaluating([base.unet, *base.text_encoders], base.vae, device):
        images = []
        for i, prompt in enumerate(settings.prompts):
            generator = torch.Generator(device="cpu").manual_seed(settings.seed + i)
            with autocast:
                result = pipeline(prompt, negative_prompt=settings.negative_prompt or None,
                                  num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale,
                                  height=settings.size, width=settings.size, generator=generator)
            images.append(result.images[0])
        return images


@contextlib.contextmanager
def evaluating(modules: list[torch.nn.Module], vae: torch.nn.Module, device: torch.device):
    """The modules in eval mode and the VAE on `device` for sampling; their modes and the VAE's place restored."""
    modules = [*modules, vae]
    modes = [m.training for m in modules]
    vae_device = next(vae.parameters()).device
    vae.to(device)
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        vae.to(vae_device)
        for module, mode in zip(modules, modes):
            module.train(mode)
