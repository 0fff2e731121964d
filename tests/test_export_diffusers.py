"""A saved LoRA loads with diffusers' `load_lora_weights` on the same base, with no missing or unexpected
keys, and reproduces the injected model's UNet and text-encoder outputs (alpha != rank, LoCon, SDXL)."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers.utils import logging as diffusers_logging
from peft.tuners.lora.layer import LoraLayer
from test_export_support import fresh, pipeline, text_outputs, trained, unet_inputs, unet_output

from lora_train.adapters.spec import LoraSpec
from lora_train.kohya.names import group_by_module
from lora_train.kohya.state import kohya_state_dict
from lora_train.kohya.write import save_lora

CASES = {
    "sd1-lora": ("sd1", LoraSpec(rank=4, alpha=2.0)),
    "sd1-alpha-above-rank": ("sd1", LoraSpec(rank=2, alpha=7.0)),
    "sd1-locon": ("sd1", LoraSpec(rank=4, alpha=1.0, conv_rank=6, conv_alpha=3.0)),
    "sd2-lora": ("sd2", LoraSpec(rank=4, alpha=8.0)),
    "sdxl-lora": ("sdxl", LoraSpec(rank=4, alpha=2.0)),
    "sdxl-locon": ("sdxl", LoraSpec(rank=3, alpha=5.0, conv_rank=4, conv_alpha=2.0)),
}


@pytest.fixture
def diffusers_warnings(caplog):
    diffusers_logging.enable_propagation()
    caplog.set_level(logging.WARNING)
    yield caplog
    diffusers_logging.disable_propagation()


def _count_layers(module) -> int:
    return sum(isinstance(child, LoraLayer) for child in module.modules())


@pytest.mark.parametrize("case", CASES)
def test_diffusers_loads_the_file_and_reproduces_the_outputs(case, tmp_path, diffusers_warnings):
    arch, spec = CASES[case]
    model = trained(arch, spec)
    state = kohya_state_dict(arch, model.unet, model.text_encoders, "fp32")
    path = save_lora(tmp_path / "lora.safetensors", state, {"ss_network_module": "networks.lora"})

    base = fresh(arch)
    pipe, encoders = pipeline(base), base.text_encoders  # the pipeline holds the base's own modules
    inputs = unet_inputs(model)
    base_unet, base_text = unet_output(pipe.unet, inputs), text_outputs(encoders)
    pipe.load_lora_weights(str(path))

    problems = [r.getMessage() for r in diffusers_warnings.records
                if any(word in r.getMessage().lower() for word in ("unexpected", "missing", "not compatible"))]
    assert not problems
    modules = group_by_module(state)
    assert _count_layers(pipe.unet) == sum(name.startswith("lora_unet_") for name in modules)
    assert sum(_count_layers(e) for e in encoders) == sum(name.startswith("lora_te") for name in modules)

    loaded, trained_out = unet_output(pipe.unet, inputs), unet_output(model.unet, inputs)
    assert not torch.allclose(loaded, base_unet, atol=1e-3)
    torch.testing.assert_close(loaded, trained_out, rtol=1e-4, atol=1e-5)
    for loaded_text, trained_text, base in zip(text_outputs(encoders), text_outputs(model.text_encoders), base_text):
        assert not torch.allclose(loaded_text, base, atol=1e-3)
        torch.testing.assert_close(loaded_text, trained_text, rtol=1e-4, atol=1e-5)
