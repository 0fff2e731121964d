"""One flow-matching step on a Flux-family transformer (the accumulation, scaling and clipping around it are
the run kit's `OptimizerStepper`).

Latents (cached, or encoded now) are noised by sigma (`flow`), packed into 2x2 tokens with their position
ids (`packing`), and the transformer predicts the velocity from them, sigma, T5's tokens and, for Flux.1,
CLIP-L's pooled output and (dev) the fixed `guidance_scale`. The loss is the mean squared error against
noise - x_0, weighted per sample by `weighting_scheme`.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator

from ..config import TrainConfig
from ..train.latents import encode_latents
from ..train.noise import diffusion_loss, sample_noise
from ..train.precision import Precision
from ..train.step import OptimizerStepper
from .base import FluxBase
from .flow import FlowSettings, loss_weights, noisy_latents, velocity
from .packing import image_ids, pack, text_ids, unpack
from .text import TextSettings, attention_masks, clip_pooled, t5_outputs


class FlowStepRunner(OptimizerStepper):
    def __init__(self, config: TrainConfig, base: FluxBase, flow: FlowSettings, text: TextSettings,
                 precision: Precision, device: torch.device, wrapped: dict, accelerator: Accelerator):
        super().__init__(config, precision, device, wrapped, accelerator)
        self.base, self.flow, self.text = base, flow, text
        self.sample_sigmas = base.family.objective.timesteps.load()
        self.transformer = wrapped.get("unet", base.transformer)
        self.clip = wrapped.get("text_encoder_0", base.clip)

    def batch_loss(self, batch: dict) -> torch.Tensor:
        latents = self.latents(batch)
        batch_size, _, height, width = latents.shape
        noise = sample_noise(latents, self.generator, self.config.noise_offset)
        sigmas = self.sample_sigmas(self.flow, batch_size, (height, width), self.generator).to(self.device)
        return self.loss_at(batch, latents, noise, sigmas, loss_weights(self.flow, sigmas))

    def fixed_loss(self, batch: dict, fractions: list[float], generator: torch.Generator) -> torch.Tensor:
        """Unweighted, at the sigmas `fractions`, without noise offset."""
        latents = self.latents(batch)
        sigmas = torch.tensor(fractions, device=self.device)
        return self.loss_at(batch, latents, sample_noise(latents, generator, 0.0), sigmas, None)

    def loss_at(self, batch: dict, latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor,
                weights: torch.Tensor | None) -> torch.Tensor:
        """The velocity prediction's loss for these latents, noise and sigmas."""
        base, dtype = self.base, self.precision.weight_dtype
        batch_size, _, height, width = latents.shape
        tokens = pack(noisy_latents(latents, noise, sigmas))
        text = self.conditioning(batch)
        kwargs = dict(hidden_states=tokens.to(dtype), encoder_hidden_states=text["t5"].to(self.device, dtype),
                      timestep=sigmas.to(dtype), img_ids=image_ids(height, width, self.device, dtype),
                      txt_ids=text_ids(text["t5"].shape[1], self.device, dtype), return_dict=False,
                      **attention_masks(base.family.parts, self.text, text["t5_mask"].to(self.device), tokens.shape[1],
                                        dtype))
        if base.family.parts.clip_l:
            kwargs["pooled_projections"] = text["pooled"].to(self.device, dtype)
        if base.guidance:
            kwargs["guidance"] = torch.full((batch_size,), self.config.guidance_scale, device=self.device, dtype=dtype)
        prediction = unpack(self.transformer(**kwargs)[0], height, width)
        return diffusion_loss(prediction, velocity(latents, noise), weights)

    def latents(self, batch: dict) -> torch.Tensor:
        if "latents" in batch:
            return batch["latents"].to(self.device, torch.float32)
        return encode_latents(self.base.vae, batch["pixel_values"], self.device)

    def conditioning(self, batch: dict) -> dict[str, torch.Tensor]:
        """T5's tokens and mask (cached, or encoded now) and CLIP-L's pooled output (cached unless CLIP-L trains)."""
        cached = batch.get("text_encoder_outputs", {})
        base, captions = self.base, batch["caption"]
        text = dict(cached) if "t5" in cached else _no_grad(t5_outputs, base.t5, base.t5_tokenizer, captions,
                                                              self.text, self.device)
        if base.family.parts.clip_l and "pooled" not in text:
            grad = torch.enable_grad() if self.config.train_text_encoder else torch.no_grad()
            with grad:
                text["pooled"] = clip_pooled(self.clip, base.clip_tokenizer, captions, self.device)
        return text


def _no_grad(function, *args):
    with torch.no_grad():
        return function(*args)
