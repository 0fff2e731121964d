"""Each call of adapters/peft_private.py still does what the trainer relies on with the installed peft.

peft's private API can change in any release; when one of these fails, the message names the
call to fix in lora_train/adapters/peft_private.py.
"""

from __future__ import annotations

import peft
import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from lora_train.adapters import peft_private
from lora_train.adapters.dora import INPUT_DORA_LAYERS, InputDoraConv2d, InputDoraLinear, InputMagnitude

ADAPTER = "default"


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1)


def _injected(use_dora: bool = False) -> Tiny:
    torch.manual_seed(0)
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["lin", "conv"], use_dora=use_dora)
    if use_dora:
        peft_private.register_custom_layers(config, INPUT_DORA_LAYERS)
    return inject_adapter_in_model(config, Tiny(), adapter_name=ADAPTER)


def check_register_custom_layers() -> None:
    model = _injected(use_dora=True)
    assert type(model.lin) is InputDoraLinear and type(model.conv) is InputDoraConv2d, \
        f"peft built {type(model.lin).__name__} / {type(model.conv).__name__}"


def check_variant_table() -> None:
    model = _injected(use_dora=True)
    for layer in (model.lin, model.conv):
        assert isinstance(layer.lora_magnitude_vector[ADAPTER], InputMagnitude), "our DoRA variant's init did not run"


def check_set_lora_modules_and_rank_alpha() -> None:
    layer = _injected().lin
    down, up = nn.Linear(6, 3, bias=False), nn.Linear(3, 5, bias=False)
    nn.init.normal_(up.weight)
    peft_private.set_lora_modules(layer, ADAPTER, down, up)
    peft_private.set_rank_alpha(layer, ADAPTER, 3, 6.0)
    x = torch.randn(4, 6)
    expected = layer.get_base_layer()(x) + x @ (up.weight @ down.weight).T * 2.0
    torch.testing.assert_close(layer(x), expected)
    assert layer.r[ADAPTER] == 3 and layer.lora_alpha[ADAPTER] == 6.0


def check_set_magnitude() -> None:
    layer = _injected(use_dora=True).lin
    magnitude = InputMagnitude(torch.full((6,), 2.0))
    peft_private.set_magnitude(layer, ADAPTER, magnitude)
    assert layer.lora_magnitude_vector[ADAPTER] is magnitude


def check_cache_store_and_pop() -> None:
    layer, value = _injected().lin, torch.ones(2)
    peft_private.cache_store(layer, "key", value)
    assert peft_private.cache_pop(layer, "key") is value


def check_conv_without_bias() -> None:
    conv, x = Tiny().conv, torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(peft_private.conv_without_bias(conv, x),
                               F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups))


CHECKS = {
    "register_custom_layers (LoraConfig._register_custom_module)": check_register_custom_layers,
    "variant_table (the lora_variants property)": check_variant_table,
    "set_lora_modules / set_rank_alpha (lora_A, lora_B, r, lora_alpha, scaling)": check_set_lora_modules_and_rank_alpha,
    "set_magnitude (lora_magnitude_vector)": check_set_magnitude,
    "cache_store / cache_pop (_cache_store, _cache_pop)": check_cache_store_and_pop,
    "conv_without_bias (torch Conv2d._conv_forward)": check_conv_without_bias,
}


@pytest.mark.parametrize("call", CHECKS)
def test_peft_private_call_still_works(call):
    try:
        CHECKS[call]()
    except Exception as exc:  # any change: say which call, with which peft
        pytest.fail(f"peft {peft.__version__} (torch {torch.__version__}) broke adapters/peft_private.py {call}: "
                    f"{type(exc).__name__}: {exc}", pytrace=False)
