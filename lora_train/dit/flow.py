"""Rectified-flow matching as the Flux trainers do it (kohya's `flux_train_utils`): the image and the noise
mixed by sigma, x_t = (1 - sigma) * x_0 + sigma * noise, and the model predicts the velocity noise - x_0.

Sigma is drawn per sample (`timestep_sampling`, kohya's names and formulas):
- `uniform`: U(0, 1);
- `sigmoid`: sigmoid(sigmoid_scale * N(0, 1));
- `logit_normal`: sigmoid(N(logit_mean, logit_std)) (SD3's sampling);
- `shift`: the sigmoid draw shifted by `discrete_flow_shift` s: s * t / (1 + (s - 1) * t);
- `flux_shift`: the sigmoid draw shifted by the image size as Flux's sampler shifts it (mu from 0.5 at 256
  packed tokens to 1.15 at 4096).
The transformer takes sigma as its timestep (diffusers' Flux models scale it by 1000 themselves).
`weighting_scheme` optionally weights each sample's loss by its sigma (SD3's `sigma_sqrt`, `cosmap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch



@dataclass(frozen=True)
class FlowSettings:
    """The config keys of the same names (defaults and ranges: config/schema.py)."""

    timestep_sampling: str
    sigmoid_scale: float
    discrete_flow_shift: float
    logit_mean: float
    logit_std: float
    weighting_scheme: str


def flux_mu(image_tokens: int) -> float:
    """Flux's resolution-dependent shift: linear in the packed token count, 0.5 at 256 and 1.15 at 4096."""
    return 0.5 + (1.15 - 0.5) * (image_tokens - 256) / (4096 - 256)


def sample_sigmas(settings: FlowSettings, batch: int, latent_size: tuple[int, int],
                  generator: torch.Generator) -> torch.Tensor:
    """One sigma in (0, 1) per sample, drawn on the generator's device (fp32)."""
    if settings.timestep_sampling == "uniform":
        return torch.rand(batch, generator=generator, device=generator.device)
    normal = torch.randn(batch, generator=generator, device=generator.device)
    if settings.timestep_sampling == "logit_normal":
        return torch.sigmoid(settings.logit_mean + settings.logit_std * normal)
    sigmas = torch.sigmoid(settings.sigmoid_scale * normal)
    if settings.timestep_sampling == "shift":
        shift = settings.discrete_flow_shift
        return sigmas * shift / (1 + (shift - 1) * sigmas)
    if settings.timestep_sampling == "flux_shift":
        height, width = latent_size
        exp_mu = math.exp(flux_mu((height // 2) * (width // 2)))
        return exp_mu / (exp_mu + (1 / sigmas - 1))
    return sigmas


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - sigma) * x_0 + sigma * noise, sigma per sample."""
    sigma = sigmas.view(-1, *[1] * (latents.ndim - 1)).to(latents.dtype)
    return (1 - sigma) * latents + sigma * noise


def velocity(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching target: noise - x_0."""
    return noise - latents


def loss_weights(settings: FlowSettings, sigmas: torch.Tensor) -> torch.Tensor | None:
    """Per-sample loss weights of `weighting_scheme` (None: all 1)."""
    if settings.weighting_scheme == "sigma_sqrt":
        return sigmas.float() ** -2.0
    if settings.weighting_scheme == "cosmap":
        return 2 / (math.pi * (1 - 2 * sigmas + 2 * sigmas ** 2))
    return None
