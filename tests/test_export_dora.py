"""A DoRA file rebuilt the way A1111 1.10 and ComfyUI rebuild it gives the trained model's outputs.

The two reference functions restate, for a kohya module's tensors, what A1111 1.10
(`network_lora` up @ down * alpha / rank, then `network.apply_weight_decompose`) and ComfyUI
(`weight_decompose`) compute for the patched weight, so the saved `dora_scale` orientation is
checked against both loaders, not against our own code."""

from __future__ import annotations

import pytest
import torch
from test_export_support import fresh, text_outputs, trained, unet_inputs, unet_output

from lora_train.adapters.spec import LoraSpec
from lora_train.adapters.targets import is_adaptable
from lora_train.kohya.names import KohyaNaming, group_by_module
from lora_train.kohya.state import kohya_state_dict


def _delta(weight, tensors):
    down, up = tensors["lora_down.weight"].float(), tensors["lora_up.weight"].float()
    scale = tensors["alpha"].item() / down.shape[0]
    return (up.flatten(1) @ down.flatten(1)).reshape(weight.shape) * scale


def _input_axis_norm(weight):
    rest = [1] * (weight.ndim - 1)
    return weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1, keepdim=True) \
        .reshape(weight.shape[1], *rest).transpose(0, 1)


def a1111_weight(weight, tensors):
    merged = weight + _delta(weight, tensors)
    return merged * (tensors["dora_scale"].float() / _input_axis_norm(merged))


def comfy_weight(weight, tensors):
    merged = weight + _delta(weight, tensors)
    scale = tensors["dora_scale"].float()
    if scale.shape[0] == merged.shape[0]:  # per-output form: ComfyUI divides by the norm of W alone
        norm = weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True).reshape(weight.shape[0],
                                                                                      *[1] * (weight.ndim - 1))
    else:
        norm = _input_axis_norm(merged)
    return merged * (scale / (norm + torch.finfo(weight.dtype).eps))


def _patched(arch, state, rebuild):
    """A fresh base whose adapted weights are replaced by `rebuild(weight, module tensors)`."""
    base = fresh(arch)
    naming = KohyaNaming.for_model(arch, base.unet, base.text_encoders)
    modules = {naming.unet_name(path): module for path, module in base.unet.named_modules() if is_adaptable(module)}
    for index, encoder in enumerate(base.text_encoders):
        modules.update({naming.text_encoder_name(index, path): module for path, module in encoder.named_modules()
                        if is_adaptable(module)})
    with torch.no_grad():
        for name, tensors in group_by_module(state).items():
            modules[name].weight.copy_(rebuild(modules[name].weight.float(), tensors))
    return base


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
@pytest.mark.parametrize("rebuild", [a1111_weight, comfy_weight], ids=["a1111", "comfyui"])
def test_webui_and_comfyui_rebuild_the_trained_dora(arch, rebuild):
    model = trained(arch, LoraSpec(rank=4, alpha=2.0, conv_rank=3, conv_alpha=6.0, use_dora=True))
    state = kohya_state_dict(arch, model.unet, model.text_encoders, "fp32")
    patched = _patched(arch, state, rebuild)
    inputs = unet_inputs(model)
    assert not torch.allclose(unet_output(fresh(arch).unet, inputs), unet_output(model.unet, inputs), atol=1e-3)
    torch.testing.assert_close(unet_output(patched.unet, inputs), unet_output(model.unet, inputs), rtol=1e-4,
                               atol=1e-5)
    for rebuilt, original in zip(text_outputs(patched.text_encoders), text_outputs(model.text_encoders)):
        torch.testing.assert_close(rebuilt, original, rtol=1e-4, atol=1e-5)


def test_dora_scale_is_saved_per_input_channel():
    model = trained("sd1", LoraSpec(rank=4, alpha=2.0, conv_rank=3, conv_alpha=6.0, use_dora=True))
    state = kohya_state_dict("sd1", model.unet, model.text_encoders, "fp16")
    modules = group_by_module(state)
    linear = modules["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"]
    assert linear["dora_scale"].shape == (1, model.unet.config.cross_attention_dim)
    conv = modules["lora_unet_down_blocks_0_resnets_0_conv1"]
    assert conv["dora_scale"].shape == (1, 32, 1, 1) and conv["dora_scale"].dtype == torch.float16
    assert conv["lora_down.weight"].shape == (3, 32, 3, 3) and conv["lora_up.weight"].shape == (32, 3, 1, 1)
    assert all("dora_scale" in tensors for tensors in modules.values())
