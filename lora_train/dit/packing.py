"""Flux's latent packing, as diffusers' FluxPipeline does it: 2x2 patches of the 16-channel latent become one
64-wide token, in rows; image tokens carry their (0, row, column) position ids, text tokens zeros."""

from __future__ import annotations

import torch


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C)."""
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // 2) * (width // 2), channels * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H/2 * W/2, 4C) -> (B, C, H, W), for a latent of `height` x `width`."""
    batch, _, packed = tokens.shape
    patches = tokens.view(batch, height // 2, width // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, packed // 4, height, width)


def image_ids(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H/2 * W/2, 3) position ids of the packed tokens of a `height` x `width` latent."""
    rows, cols = torch.meshgrid(torch.arange(height // 2), torch.arange(width // 2), indexing="ij")
    ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)
    return ids.to(device=device, dtype=dtype)


def text_ids(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(length, 3, device=device, dtype=dtype)
