"""Put the LoRA on the base model, optionally starting from a saved file, and say what trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..adapters.inject import LoraParameters, inject_lora, lora_parameters
from ..adapters.spec import LoraSpec
from ..adapters.targets import TargetSet
from ..models.base_model import BaseModel
from ..kohya.state import load_kohya_state_dict
from ..models.pretrained_lora import StateLoader, load_pretrained_lora
from .reporting import Say


@dataclass
class LoraSetup:
    spec: LoraSpec
    module_count: int  # LoRA modules injected
    params: LoraParameters  # trainable parameters per component
    trained: dict[str, torch.nn.Module]  # "unet" / "text_encoder_<i>" -> the components that train


def attach_lora(base: BaseModel, spec: LoraSpec, targets: TargetSet, *, pretrained_lora: str | Path | None,
                say: Say, load_state: StateLoader = load_kohya_state_dict) -> LoraSetup:
    """Inject the LoRA into `targets`, then load `pretrained_lora` into it if given (with `load_state`: the
    family's names)."""
    params = inject_lora(base.unet, base.text_encoders, targets, spec)
    if pretrained_lora:
        report = load_pretrained_lora(pretrained_lora, base.arch, base.unet, base.text_encoders, load_state)
        params = lora_parameters(base.unet, base.text_encoders)  # ranks may differ from the config's
        say(f"Continuing from {pretrained_lora} ({len(report.loaded)} modules)")
        if report.unmatched:
            say(f"{len(report.unmatched)} modules of {pretrained_lora} are not trained in this run "
                f"(e.g. {report.unmatched[0]})", "warning")
    trained = {"unet": base.unet} if params.unet else {}
    trained.update({f"text_encoder_{i}": te for i, (te, p) in enumerate(zip(base.text_encoders,
                                                                             params.text_encoders)) if p})
    return LoraSetup(spec, len(targets), params, trained)
