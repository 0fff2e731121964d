"""Images to latents with the VAE: one function, for the training step and the latent cache."""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_latents(vae, pixel_values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The scaled latent mean (fp32, on `device`) of a batch of images in [-1, 1], shape (B, 3, H, W); shifted
    first where the VAE has a shift (Flux's autoencoder: (mean - 0.1159) * 0.3611)."""
    dtype = next(vae.parameters()).dtype  # not `vae.dtype`: diffusers looks at every parameter for it (0.8 ms)
    pixels = pixel_values.to(device=device, dtype=dtype)
    mean = vae.encode(pixels).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None)
    return ((mean if shift is None else mean - shift) * vae.config.scaling_factor).float()
