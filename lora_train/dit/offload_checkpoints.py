"""CPU-offloaded activation checkpoints (kohya's `cpu_offload_checkpointing`): with gradient checkpointing, what
each checkpointed block keeps for its recomputation (its input tensors: the image and text streams, the
modulation vector, a mask) is kept in CPU memory and copied back to the device when the block is recomputed
in the backward pass. The block outputs then live in CPU memory between blocks, as in kohya's version;
about 1 GB less VRAM at 1024 px and about 15% slower steps (kohya's figures).

It wraps the function diffusers' transformers call for each checkpointed block (`_gradient_checkpointing_func`,
which `enable_gradient_checkpointing` sets): the wrapper moves the block's tensor arguments to the offload
device (a copy autograd differentiates through) and gives the checkpoint a function that moves them back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class OffloadedCheckpoints:
    """The wrapper installed on `transformer` (its gradient checkpointing already on); `offloaded` counts the
    tensors moved to `offload`, for the tests."""

    def __init__(self, transformer: nn.Module, offload: torch.device = torch.device("cpu")):
        checkpoint: Callable | None = getattr(transformer, "_gradient_checkpointing_func", None)
        if checkpoint is None or not transformer.gradient_checkpointing:
            raise ValueError("cpu offload of checkpoints needs the transformer's gradient checkpointing on first")
        self.checkpoint, self.offload, self.offloaded = checkpoint, torch.device(offload), 0
        transformer._gradient_checkpointing_func = self

    def __call__(self, block: nn.Module, *args):
        device = next(arg.device for arg in args if isinstance(arg, torch.Tensor))
        stored = tuple(self._moved(arg, self.offload) for arg in args)
        self.offloaded += sum(isinstance(arg, torch.Tensor) for arg in args)

        def run(*kept):
            return block(*(self._moved(arg, device) for arg in kept))

        return self.checkpoint(run, *stored)

    @staticmethod
    def _moved(arg, device: torch.device):
        return arg.to(device) if isinstance(arg, torch.Tensor) else arg
