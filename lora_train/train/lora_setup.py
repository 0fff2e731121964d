"""Put the LoRA on the base model as the config says, optionally starting from a saved file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..adapters.inject import LoraParameters, inject_lora, lora_parameters
from ..adapters.spec import LoraSpec
from ..adapters.targets import select_targets
from ..config import TrainConfig
from ..models.pretrained_lora import load_pretrained_lora
from ..models.base_model import BaseModel


@dataclass
class LoraSetup:
    spec: LoraSpec
    module_count: int  # LoRA modules injected
    params: LoraParameters  # trainable parameters per component
    trained: dict[str, torch.nn.Module]  # "unet" / "text_encoder_<i>" -> the components that train


def attach_lora(config: TrainConfig, base: BaseModel, say: Callable[[str, str], None]) -> LoraSetup:
    spec = LoraSpec.from_settings(network_type=config.network_type, lora_rank=config.lora_rank,
                                  lora_alpha=config.lora_alpha, conv_dim=config.conv_dim,
                                  conv_alpha=config.conv_alpha, use_dora=config.use_dora)
    targets = select_targets(base.unet, base.text_encoders, train_unet=config.train_unet,
                             train_text_encoder=config.train_text_encoder, unet_targets=config.unet_targets,
                             text_encoder_targets=config.text_encoder_targets, network_type=config.network_type,
                             target_modules=config.target_modules)
    params = inject_lora(base.unet, base.text_encoders, targets, spec)
    if config.pretrained_lora:
        report = load_pretrained_lora(config.pretrained_lora, base.arch, base.unet, base.text_encoders)
        params = lora_parameters(base.unet, base.text_encoders)  # ranks may differ from the config's
        say(f"Continuing from {config.pretrained_lora} ({len(report.loaded)} modules)", "info")
        if report.unmatched:
            say(f"{len(report.unmatched)} modules of {config.pretrained_lora} are not trained in this run "
                f"(e.g. {report.unmatched[0]})", "warning")
    trained = {"unet": base.unet} if params.unet else {}
    trained.update({f"text_encoder_{i}": te for i, (te, p) in enumerate(zip(base.text_encoders,
                                                                             params.text_encoders)) if p})
    return LoraSetup(spec, len(targets), params, trained)
