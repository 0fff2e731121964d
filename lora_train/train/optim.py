"""Optimizer and learning-rate schedule from the config's names.

Parameter groups carry their own learning rate, so the UNet and the text encoder(s) can
train at different rates (kohya's unet_lr / text_encoder_lr).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.optimization import get_scheduler

from ..core.errors import UserError


@dataclass
class ParamGroup:
    name: str  # "unet" or "text_encoder"
    params: list[torch.nn.Parameter]
    lr: float


def build_optimizer(name: str, groups: list[ParamGroup], weight_decay: float,
                    extra_args: dict[str, Any]) -> torch.optim.Optimizer:
    """One of adamw8bit, adamw, lion, prodigy, adafactor over the given parameter groups."""
    param_groups = [{"params": g.params, "lr": g.lr, "name": g.name} for g in groups if g.params]
    if not param_groups:
        raise UserError("No trainable LoRA parameters: check train_unet / train_text_encoder and target_modules.")
    kwargs = {"weight_decay": weight_decay, **extra_args}
    lr = param_groups[0]["lr"]
    try:
        if name == "adamw":
            return torch.optim.AdamW(param_groups, lr=lr, **kwargs)
        if name == "adamw8bit":
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(param_groups, lr=lr, **kwargs)
        if name == "lion":
            from lion_pytorch import Lion

            return Lion(param_groups, lr=lr, **kwargs)
        if name == "prodigy":
            from prodigyopt import Prodigy

            return Prodigy(param_groups, lr=lr, **kwargs)
        if name == "adafactor":
            from transformers.optimization import Adafactor

            kwargs = {"scale_parameter": False, "relative_step": False, "warmup_init": False, **kwargs}
            return Adafactor(param_groups, lr=lr, **kwargs)
    except TypeError as exc:
        raise UserError(f"'optimizer_args' do not fit the {name} optimizer: {exc}. Remove or rename them.") from None
    raise UserError(f"Unknown optimizer '{name}'.")


def build_lr_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                       num_cycles: int, power: float):
    """diffusers' schedules, stepped once per optimizer step."""
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps,
                         num_cycles=num_cycles, power=power)
