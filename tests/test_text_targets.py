"""target_modules: auto-detection from the model's own linear layers, and every given name checked on its own
(peft alone accepts a list where only some names match, and trains nothing on the others)."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from lora_train.core.errors import UserError
from lora_train.fixtures.tiny_llm import tiny_config
from lora_train.text.cli import list_modules
from lora_train.text.targets import choose_targets


def model(arch: str):
    return AutoModelForCausalLM.from_config(tiny_config(arch, 64, 1, 2))


@pytest.mark.parametrize("arch, names, conv1d", [
    ("llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], False),
    ("gpt_neox", ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"], False),
    ("gpt2", ["c_attn", "c_proj", "c_fc"], True),
])
def test_auto_detection_picks_the_models_own_layers_without_the_head(arch, names, conv1d):
    choice = choose_targets(model(arch), None)
    assert sorted(choice.names) == sorted(names)
    assert choice.fan_in_fan_out is conv1d
    assert choose_targets(model(arch), ["all-linear"]).names == choice.names


def test_chatglm_names_from_the_articles_fail_on_gpt_neox_naming_the_real_ones():
    with pytest.raises(UserError) as error:
        choose_targets(model("gpt_neox"), ["query_proj", "value_proj"])
    message = str(error.value)
    assert "query_proj, value_proj match no layer" in message
    for real in ("query_key_value", "dense_h_to_4h", "dense_4h_to_h"):
        assert real in message


def test_one_wrong_name_among_right_ones_fails_too():
    with pytest.raises(UserError, match="c_attn match no layer"):
        choose_targets(model("llama"), ["q_proj", "v_proj", "c_attn"])
    assert choose_targets(model("llama"), ["q_proj", "v_proj"]).names == ["q_proj", "v_proj"]


def test_list_modules_prints_the_candidates(tiny_llm):
    text = list_modules(str(tiny_llm("gpt_neox")))
    assert "gpt_neox" in text and "query_key_value" in text and "x2" in text and "embed_out" not in text
