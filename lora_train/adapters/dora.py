"""DoRA with one magnitude per *input* channel: the form the WebUI and ComfyUI rebuild from a file.

A kohya-format DoRA file stores the magnitude as `<module>.dora_scale`. A1111 1.10
(`extensions-builtin/Lora/network.py`, `apply_weight_decompose`) always reads it per input
channel, shape (1, in) for a Linear and (1, in, 1, 1) for a conv, and rebuilds

    W' = (W + dW) * dora_scale / ||W + dW||        (norm over every axis except axis 1)

ComfyUI (`weight_decompose`) does the same for that shape; for a per-output (out, 1) scale it
divides by the norm of W alone, and A1111 would broadcast it into a wrong (out, in) matrix with
no error. peft's own DoRA learns per-output magnitudes, so its weights cannot be saved in a form
both load. These layers learn the per-input form instead (the column norm of the DoRA paper).
Scaling input channel i of the weight by c_i is the same as scaling channel i of the input:

    y = (W + dW)(c * x) + b = base(x) + W((c - 1) * x) + dW(c * x),   c = m / ||W + dW||

The norm is detached, as in the paper (section 4.3) and in peft. The layers plug into peft's
LoRA variant mechanism (through peft_private.py); everything else is peft's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Conv2d as LoraConv2d
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraLayer, LoraVariant
from torch import nn

from .peft_private import cache_pop, cache_store, conv_without_bias, set_magnitude, variant_table

_CACHE_KEY = "{}-input-scale"


class InputMagnitude(nn.Module):
    """The learned magnitude m: one value per input channel of the base weight (fp32)."""

    def __init__(self, magnitude: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(magnitude.detach().float().clone())


def input_norm(weight: torch.Tensor) -> torch.Tensor:
    """||W|| over every axis except the input one (axis 1), in fp32: shape (in,)."""
    weight = weight.float()
    return weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)


def along_axis(values: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    """A 1-D tensor shaped to broadcast along `axis` of an `ndim`-D tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return values.view(shape)


def merged_weight(module: LoraLayer, adapter: str) -> torch.Tensor:
    """W + dW in fp32 (dW includes alpha / rank)."""
    return module.get_base_layer().weight.float() + module.get_delta_weight(adapter).float()


def input_scale(module: LoraLayer, adapter: str) -> torch.Tensor:
    """c = m / ||W + dW|| with the norm detached: fp32, shape (in,)."""
    return module.lora_magnitude_vector[adapter].weight / input_norm(merged_weight(module, adapter)).detach()


def _base_without_bias(base: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(base, nn.Conv2d):
        return conv_without_bias(base, x)
    return F.linear(x, base.weight)


class InputDoraVariant(LoraVariant):
    """peft LoRA variant hooks for the per-input DoRA (Linear and Conv2d)."""

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs) -> None:
        with torch.no_grad():
            magnitude = input_norm(merged_weight(module, adapter_name))
        set_magnitude(module, adapter_name, InputMagnitude(magnitude))

    @staticmethod
    def forward(module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor,
                **kwargs) -> torch.Tensor:
        base = module.get_base_layer()
        scale = input_scale(module, active_adapter)
        axis = 1 if isinstance(base, nn.Conv2d) else -1
        extra = _base_without_bias(base, (x * along_axis(scale - 1, x.ndim, axis).to(x.dtype)).to(base.weight.dtype))
        lora_in = module.lora_dropout[active_adapter](x) * along_axis(scale, x.ndim, axis).to(x.dtype)
        lora = module.lora_B[active_adapter](module.lora_A[active_adapter](lora_in)) * module.scaling[active_adapter]
        return result + extra + lora

    @staticmethod
    def merge_safe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        scale = input_scale(module, active_adapter).detach()
        cache_store(module, _CACHE_KEY.format(active_adapter), scale)
        merged = orig_weight.float() + module.get_delta_weight(active_adapter).float()
        return (merged * along_axis(scale, merged.ndim, 1)).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data = InputDoraVariant.merge_safe(module, active_adapter, orig_weight.data)

    @staticmethod
    def unmerge(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        scale = cache_pop(module, _CACHE_KEY.format(active_adapter))
        weight = orig_weight.data.float() / along_axis(scale, orig_weight.ndim, 1)
        return (weight - module.get_delta_weight(active_adapter).float()).to(orig_weight.dtype)


class InputDoraLinear(LoraLinear):
    """peft's LoRA Linear whose DoRA variant is the per-input one."""

    @property
    def lora_variants(self):
        return variant_table(InputDoraVariant)


class InputDoraConv2d(LoraConv2d):
    """peft's LoRA Conv2d whose DoRA variant is the per-input one."""

    # peft assigns conv_fn only after update_layer, but the variant's init needs it there
    conv_fn = staticmethod(F.conv2d)

    @property
    def lora_variants(self):
        return variant_table(InputDoraVariant)


INPUT_DORA_LAYERS = {nn.Linear: InputDoraLinear, nn.Conv2d: InputDoraConv2d}
