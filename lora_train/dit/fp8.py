"""fp8 base weights (kohya's `fp8_base`): the transformer's linear weights stay in fp8 and each layer upcasts its
weight to the input's dtype for its own matmul, so the frozen base takes half the memory of bf16 and only one
layer's weight exists in the compute dtype at a time. Biases, norms and embeddings stay in the training
precision; the LoRA layers stay fp32. A file already in fp8 (e4m3fn or e5m2) keeps its weights as they are;
a wider one is cast to e4m3fn as it is read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


class Fp8Linear(nn.Linear):
    """A Linear with an fp8 weight, upcast for each call. `compute_dtype` tells peft which dtype its LoRA
    layers get (peft reads it, as for bitsandbytes' 4-bit layers)."""

    compute_dtype: torch.dtype = torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


def linear_weights(model: nn.Module) -> set[str]:
    """The state-dict keys of the model's Linear weights."""
    return {f"{path}.weight" for path, module in model.named_modules() if type(module) is nn.Linear}


def fp8_dtype(stored: torch.dtype) -> torch.dtype:
    """The fp8 dtype a weight stored in `stored` is kept in."""
    return stored if stored in FP8_DTYPES else torch.float8_e4m3fn


def use_fp8_linears(model: nn.Module, compute_dtype: torch.dtype) -> int:
    """Make the model's Linear layers (weights already fp8) upcast per call; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.dtype in FP8_DTYPES:
            module.__class__ = Fp8Linear
            module.compute_dtype = compute_dtype
            count += 1
    return count
