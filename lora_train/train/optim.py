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
from ..models.lean_import import import_optional

BNB_MIN_8BIT_SIZE = 4096  # bitsandbytes' default min_8bit_size: smaller tensors get 32-bit state
TORCH_ADAMW_ARGS = {"weight_decay", "betas", "eps", "amsgrad"}


@dataclass
class ParamGroup:
    name: str  # "unet" or "text_encoder"
    params: list[torch.nn.Parameter]
    lr: float


def build_optimizer(name: str, groups: list[ParamGroup], weight_decay: float,
                    extra_args: dict[str, Any]) -> torch.optim.Optimizer:
    """One of adamw8bit, adamw, lion, prodigy, adafactor over the given parameter groups. adamw8bit is
    bitsandbytes' only where it keeps some state in 8 bits (see `saves_memory_in_8bit`)."""
    param_groups = [{"params": g.params, "lr": g.lr, "name": g.name} for g in groups if g.params]
    if not param_groups:
        raise UserError("No trainable LoRA parameters: check train_unet / train_text_encoder and target_modules.")
    kwargs = {"weight_decay": weight_decay, **extra_args}
    lr = param_groups[0]["lr"]
    try:
        if name == "adamw" or (name == "adamw8bit" and not saves_memory_in_8bit(param_groups, kwargs)):
            return torch.optim.AdamW(param_groups, lr=lr, fused=_fused_adamw_available(param_groups), **kwargs)
        if name == "adamw8bit":
            bnb = import_optional("bitsandbytes")

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


def saves_memory_in_8bit(param_groups: list[dict], kwargs: dict[str, Any]) -> bool:
    """Whether bitsandbytes would keep any 8-bit state. It keeps 32-bit state for tensors under
    `min_8bit_size` elements (4,096), which covers every LoRA tensor of a small rank on a small layer; there
    torch's fused AdamW does the same update (same formula, fp32 state) in one call instead of a Python loop
    over the tensors. Arguments only bitsandbytes knows keep bitsandbytes."""
    if set(kwargs) - TORCH_ADAMW_ARGS:
        return True
    return any(p.numel() >= BNB_MIN_8BIT_SIZE for group in param_groups for p in group["params"])


def _fused_adamw_available(param_groups: list[dict]) -> bool:
    """torch's fused AdamW runs on CPU and CUDA tensors; elsewhere (mps, xpu...) the foreach one is used."""
    return all(p.device.type in ("cpu", "cuda") for group in param_groups for p in group["params"])


def build_lr_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                       num_cycles: int, power: float):
    """diffusers' schedules, stepped once per optimizer step."""
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps,
                         num_cycles=num_cycles, power=power)
