"""The LoRA layers of a component and their live weights: read for saving, written for loading.

Everything is read from the modules themselves (peft's `r`, `lora_alpha`, `lora_A`, `lora_B`,
the DoRA magnitude), never from the settings that created them, so a file always describes
the network that was actually trained. Weights use kohya's shapes: `down` (rank, in[, kh, kw]),
`up` (out, rank[, 1, 1]), and the DoRA magnitude as `dora_scale` (1, in[, 1, 1]).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import torch
from peft.tuners.lora.layer import LoraLayer
from torch import nn

from ..core.errors import UserError
from .dora import InputMagnitude, input_norm, merged_weight
from .peft_private import set_lora_modules, set_magnitude, set_rank_alpha
from .spec import LoraSpec, is_spatial_conv

ADAPTER = "default"


@dataclass
class LayerWeights:
    """One LoRA layer in kohya's terms."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float
    dora_scale: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]


def lora_layers(component: nn.Module | None) -> Iterator[tuple[str, LoraLayer]]:
    """(module path, layer) of every LoRA layer holding our adapter, in `named_modules` order."""
    if component is None:
        return
    for path, module in component.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            yield path, module


def is_dora(layer: LoraLayer) -> bool:
    return ADAPTER in layer.lora_magnitude_vector


def read_layer(layer: LoraLayer) -> LayerWeights:
    """The layer's weights, detached, as they are now."""
    dora_scale = None
    if is_dora(layer):
        magnitude = layer.lora_magnitude_vector[ADAPTER].weight.detach()
        dora_scale = magnitude.view(1, -1, *[1] * (layer.get_base_layer().weight.ndim - 2))
    return LayerWeights(layer.lora_A[ADAPTER].weight.detach(), layer.lora_B[ADAPTER].weight.detach(),
                        float(layer.lora_alpha[ADAPTER]), dora_scale)


def held_spec(configured: LoraSpec, components: Iterable[nn.Module | None]) -> LoraSpec:
    """The network the components' LoRA layers hold now: the configured one with the rank and alpha
    (and LoCon's conv rank and alpha) that the layers have, which a run continued from a
    `pretrained_lora` may have changed. Where layers differ, the most common value."""
    plain, conv = Counter(), Counter()
    for component in components:
        for _, layer in lora_layers(component):
            spatial = configured.conv_rank is not None and is_spatial_conv(layer.get_base_layer())
            (conv if spatial else plain)[layer.r[ADAPTER], float(layer.lora_alpha[ADAPTER])] += 1
    rank, alpha = plain.most_common(1)[0][0] if plain else (configured.rank, configured.alpha)
    conv_rank, conv_alpha = conv.most_common(1)[0][0] if conv else (configured.conv_rank, configured.conv_alpha)
    return replace(configured, rank=rank, alpha=alpha, conv_rank=conv_rank, conv_alpha=conv_alpha)


def _with_rank(old: nn.Module, rank: int, *, as_input: bool) -> nn.Module:
    """A fresh copy of a LoRA A (as_input) or B module with another rank."""
    if isinstance(old, nn.Conv2d):
        new = (nn.Conv2d(old.in_channels, rank, old.kernel_size, old.stride, old.padding, old.dilation, bias=False)
               if as_input else nn.Conv2d(rank, old.out_channels, old.kernel_size, old.stride, bias=False))
    else:
        new = nn.Linear(old.in_features, rank, bias=False) if as_input else nn.Linear(rank, old.out_features, False)
    return new.to(device=old.weight.device, dtype=old.weight.dtype)


def _copy(target: torch.Tensor, value: torch.Tensor, key: str) -> None:
    if tuple(value.shape) != tuple(target.shape):
        raise UserError(f"{key} has shape {tuple(value.shape)} but this base model's layer needs "
                        f"{tuple(target.shape)}: the LoRA was trained on a different model.")
    with torch.no_grad():
        target.copy_(value.to(device=target.device, dtype=target.dtype))


def write_layer(layer: LoraLayer, weights: LayerWeights, key: str) -> None:
    """Set a layer to the given weights, taking their rank and alpha (the LoRA modules are replaced when
    the rank differs, so collect parameters after loading). A DoRA layer given no `dora_scale` gets the
    magnitude that makes it start exactly where the plain LoRA is. `key` names the weights in messages."""
    if weights.dora_scale is not None and not is_dora(layer):
        raise UserError(f"{key} is a DoRA layer (it has dora_scale): set use_dora: true to continue from it.")
    if weights.rank != layer.r[ADAPTER]:
        set_lora_modules(layer, ADAPTER, _with_rank(layer.lora_A[ADAPTER], weights.rank, as_input=True),
                         _with_rank(layer.lora_B[ADAPTER], weights.rank, as_input=False))
    _copy(layer.lora_A[ADAPTER].weight, weights.down, f"{key}.lora_down.weight")
    _copy(layer.lora_B[ADAPTER].weight, weights.up, f"{key}.lora_up.weight")
    set_rank_alpha(layer, ADAPTER, weights.rank, weights.alpha)
    if not is_dora(layer):
        return
    base = layer.get_base_layer().weight
    if weights.dora_scale is None:
        with torch.no_grad():
            magnitude = input_norm(merged_weight(layer, ADAPTER))
    else:
        expected = (1, base.shape[1], *[1] * (base.ndim - 2))
        if tuple(weights.dora_scale.shape) != expected:
            raise UserError(f"{key}.dora_scale has shape {tuple(weights.dora_scale.shape)}; only the per-input "
                            f"form {expected} (as A1111 and ComfyUI load it) can be continued.")
        magnitude = weights.dora_scale.flatten()
    set_magnitude(layer, ADAPTER, InputMagnitude(magnitude.to(base.device)))
