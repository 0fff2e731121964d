"""A leaner forward for plain LoRA layers: base output + B(A(x)), nothing that does no work.

peft's forward checks its arguments, loops over adapters, calls an identity dropout and
multiplies by `scaling` on every call, which on a UNet with hundreds of small LoRA layers is
a measurable share of a training step. Here a layer with exactly our adapter, no dropout,
no variant (DoRA keeps peft's path) and nothing merged or disabled computes the same sum
directly, and multiplies by `scaling` only when it is not 1 (alpha = rank). Anything else,
extra arguments included, goes through peft's own forward, so results never differ.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Conv2d, Linear
from torch import nn

from .layers import ADAPTER


class _LeanForward:
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or not self._plain():
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x)
        lora_a, lora_b = self.lora_A[ADAPTER], self.lora_B[ADAPTER]
        if x.dtype != lora_a.weight.dtype and self.cast_input_dtype_enabled:
            x = x.to(lora_a.weight.dtype)
        update = lora_b(lora_a(x))
        scaling = self.scaling[ADAPTER]
        return (result + (update if scaling == 1 else update * scaling)).to(result.dtype)

    def _plain(self) -> bool:
        return (not self.merged_adapters and not self.disable_adapters and not self.lora_variant
                and self.active_adapters == [ADAPTER] and isinstance(self.lora_dropout[ADAPTER], nn.Identity))


class LeanLinear(_LeanForward, Linear):
    pass


class LeanConv2d(_LeanForward, Conv2d):
    pass


LEAN = {Linear: LeanLinear, Conv2d: LeanConv2d}


def use_lean_forward(component: nn.Module) -> int:
    """Give every peft Linear / Conv2d LoRA layer of the component the lean forward; returns how many."""
    count = 0
    for module in component.modules():
        lean = LEAN.get(type(module))
        if lean is not None:
            module.__class__ = lean
            count += 1
    return count
