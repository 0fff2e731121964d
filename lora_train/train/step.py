"""One optimizer step: latents, noise, text conditioning (the family's), UNet prediction, loss, backward, update.

`OptimizerStepper` holds what any objective shares (accumulation, loss scaling, clipping, the step's
seeded generator); `StepRunner` is the UNet's objective, the DiT engine has its own (`dit/step.py`).

Gradient accumulation is explicit: the chunk's batches are summed into one update, with DDP's
gradient sync only on the last of them. With fp16 the loss scaler scales the backward pass and
skips an update whose gradients overflowed. A non-finite mean loss leaves the weights untouched.
"""

from __future__ import annotations

import contextlib
import math

import torch
from accelerate import Accelerator

from ..config import TrainConfig
from ..models.base_model import BaseModel
from .conditioning import TextConditioning, TokenCache, conditioning_of
from .latents import encode_latents
from .noise import diffusion_loss, sample_noise, snr_weights, training_target
from .precision import Precision


class OptimizerStepper:
    """One optimizer step over a chunk of batches, whatever the objective: a subclass gives `batch_loss`."""

    def __init__(self, config: TrainConfig, precision: Precision, device: torch.device, wrapped: dict,
                 accelerator: Accelerator):
        self.config, self.precision, self.device, self.wrapped, self.accelerator = (config, precision, device,
                                                                                    wrapped, accelerator)
        self.generator = torch.Generator()

    def batch_loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def fixed_loss(self, batch: dict, fractions: list[float], generator: torch.Generator) -> torch.Tensor:
        """The objective's mean loss with sample i at the noise level `fractions[i]` of its range, noise from
        `generator` (the validation loss)."""
        raise NotImplementedError

    def optimizer_step(self, step: int, chunk: list[dict], optimizer, params: list[torch.nn.Parameter]) -> float:
        """Forward and backward over the chunk's batches, then optimizer step number `step`; returns the mean
        loss over the chunk and all processes."""
        # Noise and timesteps depend on (seed, process, step) alone: a resumed run draws the same ones.
        self.generator.manual_seed(hash((self.config.seed, self.accelerator.process_index, step)) & (2**63 - 1))
        scaler, total = self.precision.scaler, 0.0
        for i, batch in enumerate(chunk):
            sync = i == len(chunk) - 1
            with contextlib.ExitStack() as stack:
                if not sync:
                    for module in self.wrapped.values():
                        stack.enter_context(self.accelerator.no_sync(module))
                with self.precision.autocast():
                    loss = self.batch_loss(batch)
                scaled = loss / len(chunk)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total += loss.detach()
        mean = self.accelerator.reduce(total / len(chunk), "mean").item()
        if not math.isfinite(mean):
            optimizer.zero_grad(set_to_none=True)
            return mean
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return mean


class StepRunner(OptimizerStepper):
    """The UNet's step (epsilon or v objective): the models, noise schedule and tokenizer cache it needs."""

    def __init__(self, config: TrainConfig, base: BaseModel, scheduler, precision: Precision, device: torch.device,
                 wrapped: dict, accelerator: Accelerator):
        super().__init__(config, precision, device, wrapped, accelerator)
        self.base, self.scheduler = base, scheduler
        self.unet = wrapped.get("unet", base.unet)
        self.text_encoders = [wrapped.get(f"text_encoder_{i}", te) for i, te in enumerate(base.text_encoders)]
        self.tokenize = TokenCache(base.tokenizers)
        self.conditioning = conditioning_of(base.arch)
        self.sample_timesteps = base.family.objective.timesteps.load()

    def batch_loss(self, batch: dict) -> torch.Tensor:
        config = self.config
        latents = self.latents(batch)
        noise = sample_noise(latents, self.generator, config.noise_offset)
        timesteps = self.sample_timesteps(latents.shape[0], self.scheduler, self.generator, self.device)
        weights = snr_weights(self.scheduler, timesteps, config.min_snr_gamma) if config.min_snr_gamma else None
        return self.loss_at(batch, latents, noise, timesteps, weights)

    def fixed_loss(self, batch: dict, fractions: list[float], generator: torch.Generator) -> torch.Tensor:
        """Unweighted, at the timesteps `fractions` of the schedule, without noise offset."""
        latents = self.latents(batch)
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.tensor([min(int(fraction * steps), steps - 1) for fraction in fractions], device=self.device)
        return self.loss_at(batch, latents, sample_noise(latents, generator, 0.0), timesteps, None)

    def loss_at(self, batch: dict, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                weights: torch.Tensor | None) -> torch.Tensor:
        """The prediction's loss (epsilon or v target) for these latents, noise and timesteps."""
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        text = self.text_conditioning(batch)
        extra = self.conditioning.unet_inputs(text, batch, self.device)
        prediction = self.unet(noisy, timesteps, encoder_hidden_states=text.hidden_states, **extra).sample
        return diffusion_loss(prediction, training_target(self.scheduler, latents, noise, timesteps), weights)

    def latents(self, batch: dict) -> torch.Tensor:
        if "latents" in batch:
            return batch["latents"].to(self.device, torch.float32)
        return encode_latents(self.base.vae, batch["pixel_values"], self.device)

    def text_conditioning(self, batch: dict) -> TextConditioning:
        if "text_encoder_outputs" in batch:
            cached = batch["text_encoder_outputs"]
            pooled = cached.get("pooled")
            return TextConditioning(cached["hidden_states"].to(self.device),
                                    pooled.to(self.device) if pooled is not None else None)
        ids = [t.to(self.device) for t in self.tokenize(batch["caption"])]
        grad = torch.enable_grad() if self.config.train_text_encoder else torch.no_grad()
        with grad:
            return self.conditioning.encode(self.text_encoders, ids, self.config.clip_skip)


def enable_gradient_checkpointing(trained: dict[str, torch.nn.Module]) -> None:
    for name, module in trained.items():
        if name == "unet":
            module.enable_gradient_checkpointing()
        elif hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5.2x
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

