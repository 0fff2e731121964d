"""Put peft LoRA layers on exactly the chosen modules and hand back their parameters per component.

The base weights are frozen (`requires_grad=False`) and may be fp16 / bf16; the LoRA weights
(and the DoRA magnitudes) are kept in fp32 so the optimizer state and updates stay exact.
Spatial convolutions (LoCon) get `conv_rank` / `conv_alpha` through peft's rank / alpha patterns.

Rank policy: a rank larger than a layer can use (min(in, out), where `in` of a conv counts
in_channels x kernel area) is refused with a UserError naming the config key, a layer and the
largest usable value. kohya would silently train useless extra rank; clamping instead would
give layers different ranks from `ss_network_dim`. Nothing is injected when the check fails.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from ..core.errors import UserError
from .dora import INPUT_DORA_LAYERS
from .layers import ADAPTER, lora_layers
from .peft_private import register_custom_layers
from .lean import use_lean_forward
from .spec import LoraSpec
from .targets import TargetSet, text_encoder_labels


@dataclass
class LoraParameters:
    """Trainable LoRA parameters per component, for separate learning rates."""

    unet: list[nn.Parameter]
    text_encoders: list[list[nn.Parameter]]

    def all(self) -> list[nn.Parameter]:
        return self.unet + [p for params in self.text_encoders for p in params]


def rank_limit(module: nn.Module) -> int:
    """The largest useful rank for a Linear / Conv2d layer."""
    if isinstance(module, nn.Conv2d):
        fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
        return min(fan_in, module.out_channels)
    return min(module.in_features, module.out_features)


def check_ranks(components: Sequence[tuple[str, nn.Module, Sequence[str]]], spec: LoraSpec) -> None:
    """UserError when a rank exceeds what a targeted layer can use (one line per config key)."""
    worst: dict[str, tuple[int, int, str]] = {}  # key -> (rank, smallest limit, example layer)
    for label, component, names in components:
        modules = dict(component.named_modules())
        for name in names:
            rank, _, key = spec.rank_for(modules[name])
            limit = rank_limit(modules[name])
            if rank > limit and (key not in worst or limit < worst[key][1]):
                worst[key] = (rank, limit, f"{label} layer {name}")
    if worst:
        raise UserError(" ".join(
            f"{key} {rank} is more than the {example} can use (at most {limit}): lower {key} to {limit} or less."
            for key, (rank, limit, example) in worst.items()))


def _config(modules: dict[str, nn.Module], names: Sequence[str], spec: LoraSpec) -> LoraConfig:
    patterns = {re.escape(name): spec.rank_for(modules[name]) for name in names}
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, target_modules=list(names), lora_dropout=0.0,
                        init_lora_weights=True, use_dora=spec.use_dora,
                        rank_pattern={k: r for k, (r, _, _) in patterns.items() if r != spec.rank},
                        alpha_pattern={k: a for k, (_, a, _) in patterns.items() if a != spec.alpha})
    if spec.use_dora:
        register_custom_layers(config, INPUT_DORA_LAYERS)
    return config


def _component_parameters(component: nn.Module | None) -> list[nn.Parameter]:
    return [p for _, layer in lora_layers(component) for name, p in layer.named_parameters()
            if p.requires_grad and not name.startswith("base_layer.")]


def lora_parameters(unet: nn.Module | None, text_encoders: Sequence[nn.Module]) -> LoraParameters:
    """The trainable LoRA parameters now in the components (collect again after loading a file)."""
    return LoraParameters(_component_parameters(unet), [_component_parameters(te) for te in text_encoders])


def inject_component(component: nn.Module, names: Sequence[str], spec: LoraSpec) -> None:
    """Freeze the component and wrap the named layers with fp32 LoRA layers (with the lean forward)."""
    component.requires_grad_(False)
    if not names:
        return
    inject_adapter_in_model(_config(dict(component.named_modules()), names, spec), component, adapter_name=ADAPTER)
    use_lean_forward(component)
    for param in _component_parameters(component):
        param.data = param.data.to(torch.float32)


def inject_lora(unet: nn.Module, text_encoders: Sequence[nn.Module], targets: TargetSet,
                spec: LoraSpec) -> LoraParameters:
    """Inject into the UNet and each text encoder (all frozen, even those with no targets)."""
    te_names = list(targets.text_encoders) + [()] * (len(text_encoders) - len(targets.text_encoders))
    parts = [("UNet", unet, targets.unet)] + list(zip(text_encoder_labels(len(text_encoders)), text_encoders,
                                                       te_names))
    check_ranks(parts, spec)
    for _, component, names in parts:
        inject_component(component, names, spec)
    return lora_parameters(unet, text_encoders)
