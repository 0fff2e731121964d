"""Injection: frozen base, fp32 LoRA on a half-precision base, parameters per component, LoCon ranks,
the rank-too-large error, and the per-input DoRA layer's math (forward, merge, unmerge)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_export_support import fresh, inject, randomize, unet_inputs
from torch import nn

from lora_train.adapters.inject import inject_component, inject_lora, lora_parameters
from lora_train.adapters.layers import ADAPTER, lora_layers
from lora_train.adapters.spec import LoraSpec
from lora_train.adapters.targets import TargetSet
from lora_train.core.errors import UserError


def _layer_params(component):
    return {id(p) for _, layer in lora_layers(component) for name, p in layer.named_parameters()
            if not name.startswith("base_layer.")}


def test_base_is_frozen_and_parameters_come_per_component():
    model = fresh("sdxl")
    spec = LoraSpec(rank=4, alpha=2.0, use_dora=True)
    inject(model, spec)
    params = lora_parameters(model.unet, model.text_encoders)
    assert {id(p) for p in params.unet} == _layer_params(model.unet)
    for encoder, encoder_params in zip(model.text_encoders, params.text_encoders):
        assert {id(p) for p in encoder_params} == _layer_params(encoder) and encoder_params
    assert len(params.unet) == 3 * len(list(lora_layers(model.unet)))  # lora_A, lora_B, DoRA magnitude
    trainable = {id(p) for part in [model.unet, *model.text_encoders] for p in part.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in params.all()}


def test_lora_stays_fp32_on_a_bf16_base():
    model = fresh("sd1")
    model.unet.to(torch.bfloat16)
    model.text_encoders[0].to(torch.bfloat16)
    inject(model, LoraSpec(rank=4, alpha=4.0, conv_rank=2, conv_alpha=2.0))
    randomize(model)
    params = lora_parameters(model.unet, model.text_encoders)
    assert {p.dtype for p in params.all()} == {torch.float32}
    assert {p.dtype for name, p in model.unet.named_parameters() if "base_layer" in name} == {torch.bfloat16}
    inputs = {key: value.to(torch.bfloat16) if value.is_floating_point() else value
              for key, value in unet_inputs(model).items()}
    out = model.unet(**inputs).sample
    assert out.dtype == torch.bfloat16
    out.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params.unet)
    assert all(p.grad is None for p in model.unet.parameters() if not p.requires_grad)


def test_locon_gives_spatial_convs_their_own_rank_and_alpha():
    model = inject(fresh("sd1"), LoraSpec(rank=4, alpha=2.0, conv_rank=6, conv_alpha=3.0), train_text_encoder=False)
    layers = dict(lora_layers(model.unet))

    def rank_alpha_scale(path):
        return layers[path].r[ADAPTER], layers[path].lora_alpha[ADAPTER], layers[path].scaling[ADAPTER]

    for path in ("down_blocks.0.resnets.0.conv1", "down_blocks.0.downsamplers.0.conv", "up_blocks.0.upsamplers.0.conv"):
        assert rank_alpha_scale(path) == (6, 3.0, 0.5)
    for path in ("down_blocks.1.resnets.0.conv_shortcut", "down_blocks.0.resnets.0.time_emb_proj",
                 "down_blocks.0.attentions.0.proj_in", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"):
        assert rank_alpha_scale(path) == (4, 2.0, 0.5)


def test_a_rank_larger_than_a_layer_is_refused_before_anything_is_injected():
    model = fresh("sd1")
    targets = TargetSet(("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                         "down_blocks.0.resnets.0.conv1"), ((),))
    with pytest.raises(UserError, match=r"lora_rank 33 is more than .* can use \(at most 32\): lower lora_rank"):
        inject_lora(model.unet, model.text_encoders, targets, LoraSpec(rank=33, alpha=1.0, conv_rank=8, conv_alpha=1))
    with pytest.raises(UserError, match=r"conv_dim 40 is more than .*resnets.0.conv1 can use \(at most 32\)"):
        inject_lora(model.unet, model.text_encoders, targets, LoraSpec(rank=8, alpha=1.0, conv_rank=40, conv_alpha=1))
    assert not list(lora_layers(model.unet))
    inject_lora(model.unet, model.text_encoders, targets, LoraSpec(rank=32, alpha=1.0, conv_rank=32, conv_alpha=1))
    assert len(list(lora_layers(model.unet))) == 2


def _dora_reference(weight, layer):
    """W' = (W + dW) * m / ||W + dW|| with the norm over every axis but the input one (the DoRA paper)."""
    merged = weight + layer.get_delta_weight(ADAPTER)
    norm = merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1)
    shape = [1, -1] + [1] * (weight.ndim - 2)
    return merged * (layer.lora_magnitude_vector[ADAPTER].weight / norm).view(shape)


@pytest.mark.parametrize("base,x", [(nn.Linear(12, 10), torch.randn(3, 5, 12)),
                                    (nn.Conv2d(6, 8, 3, padding=1), torch.randn(2, 6, 5, 5))], ids=["linear", "conv"])
def test_dora_layer_forward_and_merge_follow_the_per_input_formula(base, x):
    holder = nn.Sequential(base)
    inject_component(holder, ["0"], LoraSpec(rank=3, alpha=6.0, conv_rank=3, conv_alpha=6.0, use_dora=True))
    layer = holder[0]
    with torch.no_grad():
        for module in (layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]):
            module.weight.normal_(0, 0.3)
        layer.lora_magnitude_vector[ADAPTER].weight.mul_(torch.rand(x.shape[-1] if x.ndim == 3 else 6) + 0.5)
        weight, bias = base.weight.clone(), base.bias.clone()
        expected = (F.linear(x, _dora_reference(weight, layer), bias) if isinstance(base, nn.Linear)
                    else F.conv2d(x, _dora_reference(weight, layer), bias, padding=1))
        torch.testing.assert_close(holder(x), expected, rtol=1e-5, atol=1e-5)
        layer.merge(safe_merge=True)
        torch.testing.assert_close(holder(x), expected, rtol=1e-5, atol=1e-5)
        layer.unmerge()
        torch.testing.assert_close(base.weight, weight, rtol=1e-5, atol=1e-6)
