"""Mixed precision: frozen weights in fp16/bf16, LoRA weights and optimizer state in fp32.

torch's autocast and GradScaler are used directly (rather than through accelerate) so the
fp16 path, loss scaler included, is the same code on a GPU and on a CPU, where it is tested.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Precision:
    name: str  # no | fp16 | bf16
    device_type: str
    scaler: torch.amp.GradScaler | None

    @property
    def weight_dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self):
        if self.name == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.weight_dtype)


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """`auto` -> bf16 on GPUs that support it, fp16 on other GPUs, no (fp32) elsewhere."""
    name = requested
    if requested == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "no"
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return Precision(name, device.type, scaler)
