"""Injected components <-> a kohya-format LoRA state dict.

Export reads every LoRA layer's live weights (peft `lora_A` -> `lora_down`, `lora_B` ->
`lora_up`, the layer's real `lora_alpha` -> `alpha`, the per-input DoRA magnitude ->
`dora_scale`) and casts them to the save precision. `alpha` is always a float32 scalar:
loaders only call `.item()` on it, and an fp16 / bf16 alpha would round values like 0.3.
Import is the inverse, into freshly injected components, taking each module's rank and
alpha from the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from peft.tuners.lora.layer import LoraLayer
from torch import nn

from ..adapters.layers import LayerWeights, lora_layers, read_layer, write_layer
from ..core.errors import UserError
from .names import ALPHA, DORA_SCALE, DOWN, UP, KohyaNaming, group_by_module

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def named_lora_layers(arch: str, unet: nn.Module, text_encoders: Sequence[nn.Module]
                      ) -> Iterator[tuple[str, LoraLayer]]:
    """(kohya module name, layer) of every LoRA layer: UNet first, then each text encoder."""
    naming = KohyaNaming.for_model(arch, unet, text_encoders)
    for path, layer in lora_layers(unet):
        yield naming.unet_name(path), layer
    for index, text_encoder in enumerate(text_encoders):
        for path, layer in lora_layers(text_encoder):
            yield naming.text_encoder_name(index, path), layer


def _tensor(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return value.detach().to(device="cpu", dtype=dtype).contiguous()


def kohya_state_dict(arch: str, unet: nn.Module, text_encoders: Sequence[nn.Module],
                     save_precision: str = "fp16") -> dict[str, torch.Tensor]:
    """The kohya-format tensors of every LoRA layer in the components."""
    dtype = SAVE_DTYPES[save_precision]
    state: dict[str, torch.Tensor] = {}
    for name, layer in named_lora_layers(arch, unet, text_encoders):
        weights = read_layer(layer)
        state[f"{name}.{DOWN}"] = _tensor(weights.down, dtype)
        state[f"{name}.{UP}"] = _tensor(weights.up, dtype)
        state[f"{name}.{ALPHA}"] = torch.tensor(weights.alpha, dtype=torch.float32)
        if weights.dora_scale is not None:
            state[f"{name}.{DORA_SCALE}"] = _tensor(weights.dora_scale, dtype)
    return state


@dataclass
class LoadReport:
    """What a load did: modules set, file entries that fit no injected layer, layers left fresh."""

    loaded: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # file module names (or keys) with no layer here
    not_in_file: list[str] = field(default_factory=list)  # injected layers the file has no weights for


def layer_weights(name: str, tensors: Mapping[str, torch.Tensor]) -> LayerWeights:
    down, up = tensors[DOWN].float(), tensors[UP].float()
    alpha = float(tensors[ALPHA].item()) if ALPHA in tensors else float(down.shape[0])  # kohya: no alpha = rank
    scale = tensors.get(DORA_SCALE)
    if up.shape[1] != down.shape[0]:
        raise UserError(f"{name}: lora_up rank {up.shape[1]} differs from lora_down rank {down.shape[0]}; "
                        "the file is damaged.")
    return LayerWeights(down, up, alpha, None if scale is None else scale.float())


def load_kohya_state_dict(arch: str, unet: nn.Module, text_encoders: Sequence[nn.Module],
                          state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
    """Set the injected layers from kohya-format tensors (any rank / alpha per module). Modules the file
    names but the components do not have, or in a form other than plain LoRA / DoRA (LyCORIS LoHa,
    Tucker `lora_mid`, ...), are reported, not loaded. Collect parameters after this: a
    module whose rank changes gets new LoRA modules."""
    layers = dict(named_lora_layers(arch, unet, text_encoders))
    report = LoadReport()
    for name, tensors in group_by_module(state_dict).items():
        layer = layers.get(name)
        if layer is None or not {DOWN, UP} <= tensors.keys() <= {DOWN, UP, ALPHA, DORA_SCALE}:
            report.unmatched.append(name)
            continue
        write_layer(layer, layer_weights(name, tensors), name)
        report.loaded.append(name)
    report.not_in_file = [name for name in layers if name not in report.loaded]
    return report
