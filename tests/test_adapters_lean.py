"""The lean LoRA forward gives exactly peft's outputs and gradients, and steps aside where it does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora.layer import Linear
from torch import nn

from lora_train.adapters.lean import LeanConv2d, LeanLinear, use_lean_forward


def model_pair(alpha: float) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Flatten(2), nn.Linear(64, 16))
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=alpha, target_modules=["0", "2"], lora_dropout=0.0,
                                       init_lora_weights=False), model)
    model.requires_grad_(False)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    lean = copy.deepcopy(model)
    assert use_lean_forward(lean) == 2
    return model, lean


def outputs_and_grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = model(x)
    out.square().mean().backward()
    return [out.detach()] + [p.grad for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("alpha", [4.0, 2.0])  # scaling 1 (skipped multiply) and 0.5
def test_lean_forward_matches_peft(alpha):
    peft_model, lean_model = model_pair(alpha)
    assert isinstance(lean_model[0], LeanConv2d) and isinstance(lean_model[2], LeanLinear)
    x = torch.randn(2, 4, 8, 8)
    for ours, theirs in zip(outputs_and_grads(lean_model, x), outputs_and_grads(peft_model, x)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_disabled_adapters_and_extra_arguments_take_peft_path():
    _, lean_model = model_pair(4.0)
    layer = lean_model[2]
    x = torch.randn(3, 64)
    layer.enable_adapters(False)
    torch.testing.assert_close(layer(x), layer.base_layer(x))
    layer.enable_adapters(True)
    assert not torch.equal(layer(x), layer.base_layer(x))
    assert isinstance(layer, Linear)  # still a peft layer for everything that reads it
