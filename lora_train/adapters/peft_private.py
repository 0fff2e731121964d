"""Every call into peft's (and torch's) private API, in one place.

peft gives no public way to give a layer another rank or alpha after injection, to plug in our
own DoRA form, or to keep state between merge and unmerge; these helpers do it through peft's
internals as of peft 0.21. tests/test_peft_private.py runs each one against the installed peft
and names the one that broke, so a peft upgrade fails there first, not deep inside a training run.

- `register_custom_layers`: `LoraConfig._register_custom_module` (which layer class peft builds
  for which base layer type).
- `variant_table`: the keys of the `lora_variants` property peft's Linear / Conv2d consult to pick
  the DoRA implementation when `use_dora` is set.
- `set_lora_modules`, `set_rank_alpha`, `set_magnitude`: peft's `lora_A` / `lora_B` /
  `lora_magnitude_vector` module dicts and `r` / `lora_alpha` / `scaling` dicts, edited in place.
- `cache_store`, `cache_pop`: `_cache_store` / `_cache_pop`, state kept from merge to unmerge.
- `conv_without_bias`: torch's `Conv2d._conv_forward` (a convolution with the layer's own
  stride, padding and dilation, without its bias).
"""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig
from peft.tuners.lora.layer import LoraLayer
from torch import nn


def register_custom_layers(config: LoraConfig, mapping: dict[type[nn.Module], type[nn.Module]]) -> None:
    """Make peft wrap each base layer type of `mapping` in the given LoRA layer class."""
    config._register_custom_module(mapping)


def variant_table(dora_variant: type) -> dict[tuple[str, ...], type | None]:
    """The `lora_variants` of a layer whose DoRA (`use_dora`) is `dora_variant`; plain LoRA otherwise."""
    return {(): None, ("use_dora",): dora_variant}


def set_lora_modules(layer: LoraLayer, adapter: str, down: nn.Module, up: nn.Module) -> None:
    """Replace the adapter's A (`down`) and B (`up`) modules, e.g. with ones of another rank."""
    layer.lora_A[adapter] = down
    layer.lora_B[adapter] = up


def set_rank_alpha(layer: LoraLayer, adapter: str, rank: int, alpha: float) -> None:
    """Record the adapter's rank and alpha, and the scale (alpha / rank) its forward pass applies."""
    layer.r[adapter] = rank
    layer.lora_alpha[adapter] = alpha
    layer.scaling[adapter] = alpha / rank


def set_magnitude(layer: LoraLayer, adapter: str, magnitude: nn.Module) -> None:
    """Replace the adapter's DoRA magnitude module."""
    layer.lora_magnitude_vector[adapter] = magnitude


def cache_store(layer: LoraLayer, key: str, value: Any) -> None:
    layer._cache_store(key, value)


def cache_pop(layer: LoraLayer, key: str) -> Any:
    return layer._cache_pop(key)


def conv_without_bias(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The convolution of `x` with the layer's weight and settings, without its bias."""
    return conv._conv_forward(x, conv.weight, None)
