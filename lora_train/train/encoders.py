"""The frozen VAE and text encoder(s) of a run: placed on the device, released while the steps do not use
them, and loaded again from the base model's files only while samples are rendered.

Once the latent and text-encoder caches are filled, the steps encode nothing, yet the encoders' weights
stayed resident through the whole run (SD1.5 in fp32: 0.8 GB; SDXL: 2 GB). Their tensors are views of a
mapping of the checkpoint that holds only their part (checkpoint_file.py maps the file once per part), so
dropping the modules also unmaps those pages. Kept: the VAE while the steps encode images (no latent
cache: random crops, flips, `cache_latents: false`), the text encoders while the steps encode captions
(no text cache) or any of them holds LoRA layers.

Channels-last: the UNet only on CUDA, in the same `.to()` that copies each weight to the GPU, so no
weight is ever held twice. On a CPU its weights are the file's own pages (an fp32 file trained in fp32);
converting them made an anonymous copy of every 3x3 convolution (2.4 GB for SD1.5 in fp32) beside the
mapped originals, for no speed measured at 512 px (14.00 s a step with and without, SD1.5-sized, 2-core
CPU). The VAE, which pays on a CPU too, is copied whole (`_channels_last_vae`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..models.base_model import BaseModel
from .precision import Precision


def weight_layout(device: torch.device) -> torch.memory_format:
    """The layout of the frozen UNet's weights on `device`: channels-last (NHWC) where it pays, on CUDA's
    tensor-core convolutions (activations follow the weights' layout, so inputs need no change)."""
    return torch.channels_last if device.type == "cuda" else torch.preserve_format


def place_model(base: BaseModel, device: torch.device, precision: Precision) -> None:
    """The base model's frozen parts on `device` in the training precision, before any LoRA is added."""
    base.unet.to(device, precision.weight_dtype, memory_format=weight_layout(device))
    _place_encoders(base, base.vae, base.text_encoders, device, precision)


def _place_encoders(base: BaseModel, vae, text_encoders: list, device: torch.device, precision: Precision) -> None:
    """The VAE (fp32 for SDXL: fp16 overflows) and the text encoders in the training precision on `device`."""
    for encoder in text_encoders:
        encoder.to(device, precision.weight_dtype)
    if vae is not None:
        vae.to(device, torch.float32 if base.family.parts.vae_fp32 else precision.weight_dtype)
        _channels_last_vae(vae)


def _channels_last_vae(vae: torch.nn.Module) -> None:
    """The VAE's weights channels-last, on CUDA and on a CPU too: its encoding, which fills the latent cache,
    took 0.79x the time at 512 px on a CPU (SD1.5-sized, fp32, medians of 3 interleaved on a loaded 2-core
    machine; 0.87x on the tiny model). Every tensor is copied, so none is left in
    the file's mapping and the mapping goes (a copy of only the convolutions would keep it, and its pages,
    beside them): one copy of each weight, anonymous instead of file-backed."""
    for tensor in [*vae.parameters(), *vae.buffers()]:
        tensor.data = tensor.data.to(memory_format=torch.channels_last if tensor.dim() == 4 else
                                     torch.contiguous_format, copy=True)


def release_encoders(base: BaseModel, vae: bool, text_encoders: bool) -> list[str]:
    """Drop the VAE and/or the text encoders from `base` where it can load them again; returns what was
    released, by name."""
    released = []
    if base.load_encoders is None:
        return released
    if vae and base.vae is not None:
        base.vae = None
        released.append("VAE")
    if text_encoders and base.text_encoders:
        released.append("text encoder" + ("s" if len(base.text_encoders) > 1 else ""))
        base.text_encoders = []
    return released


@contextlib.contextmanager
def encoders_loaded(base: BaseModel, device: torch.device, precision: Precision) -> Iterator[None]:
    """Inside the block `base` has its VAE and text encoders: those released are read from its files again,
    placed as at the start, and released again after the block."""
    missing_vae, missing_text = base.vae is None, not base.text_encoders
    if not (missing_vae or missing_text):
        yield
        return
    vae, text_encoders = base.load_encoders(with_vae=missing_vae, with_text_encoders=missing_text)
    _place_encoders(base, vae, text_encoders, device, precision)
    if missing_vae:
        base.vae = vae
    if missing_text:
        base.text_encoders = text_encoders
    del vae, text_encoders
    try:
        yield
    finally:
        release_encoders(base, missing_vae, missing_text)
