"""Images to latents with the VAE: one function, for the training step and the latent cache."""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_latents(vae, pixel_values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The scaled latent mean (fp32, on `device`) of a batch of images in [-1, 1], shape (B, 3, H, W)."""
    dtype = next(vae.parameters()).dtype  # not `vae.dtype`: diffusers looks at every parameter for it (0.8 ms)
    pixels = pixel_values.to(device=device, dtype=dtype)
    return (vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor).float()
