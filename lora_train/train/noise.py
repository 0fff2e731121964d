"""The diffusion side of a training step: noise, timesteps, the target, and the loss.

Pure functions of tensors and a scheduler, so each can be checked against diffusers' own
code (`get_velocity` for the v-prediction target, `compute_snr` for min-SNR weighting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr


def training_scheduler(scheduler: DDPMScheduler, zero_terminal_snr: bool) -> DDPMScheduler:
    """The noise schedule used for training; zero terminal SNR rescales the betas (v-prediction models)."""
    if not zero_terminal_snr:
        return scheduler
    return DDPMScheduler.from_config(scheduler.config, rescale_betas_zero_snr=True)


def sample_noise(latents: torch.Tensor, generator: torch.Generator, noise_offset: float) -> torch.Tensor:
    """Gaussian noise like `latents` (drawn on the generator's device), plus the per-channel offset
    that lets a model learn very dark and very bright images."""
    noise = torch.randn(latents.shape, generator=generator, device=generator.device)
    if noise_offset:
        noise += noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=generator,
                                            device=generator.device)
    return noise.to(device=latents.device, dtype=latents.dtype)


def sample_timesteps(batch: int, scheduler: DDPMScheduler, generator: torch.Generator,
                     device: torch.device) -> torch.Tensor:
    steps = scheduler.config.num_train_timesteps
    return torch.randint(0, steps, (batch,), generator=generator, device=generator.device).to(device)


def training_target(scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict: the noise (epsilon) or the velocity (v-prediction)."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    return noise


def snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023), one per sample, as in diffusers' examples."""
    snr = compute_snr(scheduler, timesteps).float().clamp(min=1e-8)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def diffusion_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error in fp32, optionally weighted per sample."""
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample.device)
    return per_sample.mean()
