"""`merge`: the exact merge equals applying the LoRAs together (diffusers with two adapters, and the sum of
the weight changes), weights scale linearly (no kohya dilution), SVD mode stays within the error it
reports, block weights, other key styles, and clear refusals."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_export_support import fresh, pipeline, text_outputs, unet_inputs, unet_output
from tools_support import lora_file, max_difference

from lora_train.adapters.spec import LoraSpec
from lora_train.core.errors import UserError
from lora_train.tools.bake import bake_loras
from lora_train.tools.blocks import block_of
from lora_train.tools.lora_file import read_any_lora
from lora_train.tools.merge import merge_loras
from lora_train.tools.resize import resize_lora
from text_support import make_adapter


@pytest.fixture(scope="module")
def sd1_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    first, _ = lora_file(folder, "style_a", "sd1", LoraSpec(rank=4, alpha=2.0, conv_rank=3, conv_alpha=1.0), seed=0)
    second, _ = lora_file(folder, "style_b", "sd1", LoraSpec(rank=2, alpha=5.0), seed=1, )
    return first, second


def _expected_delta(name, weighted):
    return sum(weight * file.modules[name].delta() for file, weight in weighted if name in file.modules)


def test_exact_merge_equals_the_weighted_sum_of_the_changes(sd1_pair, tmp_path):
    first, second = map(read_any_lora, sd1_pair)
    result = merge_loras(list(sd1_pair), [0.6, -0.4], tmp_path / "mix.safetensors")
    merged = read_any_lora(result.path)
    assert merged.modules.keys() == first.modules.keys() | second.modules.keys()  # the union (b has no convs)
    for name, module in merged.modules.items():
        assert module.alpha == module.rank  # scale 1: the factors carry the weights
        torch.testing.assert_close(module.delta(), _expected_delta(name, [(first, 0.6), (second, -0.4)]),
                                   rtol=1e-5, atol=1e-6)
    assert merged.arch == "sd1" and merged.metadata["ss_base_model_version"] == "sd_v1"
    assert "style_a.safetensors x 0.6" in merged.metadata["ss_training_comment"]


@pytest.mark.slow
def test_exact_merge_matches_diffusers_with_two_adapters(sd1_pair, tmp_path):
    merged = merge_loras(list(sd1_pair), [0.6, 0.4], tmp_path / "mix.safetensors").path
    base = fresh("sd1")
    inputs = unet_inputs(base)
    together = pipeline(base)
    together.load_lora_weights(str(sd1_pair[0]), adapter_name="a")
    together.load_lora_weights(str(sd1_pair[1]), adapter_name="b")
    together.set_adapters(["a", "b"], adapter_weights=[0.6, 0.4])
    expected_unet, expected_text = unet_output(together.unet, inputs), text_outputs(base.text_encoders)

    single = fresh("sd1")
    pipeline(single).load_lora_weights(str(merged))
    torch.testing.assert_close(unet_output(single.unet, inputs), expected_unet, rtol=1e-4, atol=1e-5)
    for got, expected in zip(text_outputs(single.text_encoders), expected_text):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert max_difference(expected_unet, unet_output(fresh("sd1").unet, inputs)) > 1e-2  # the LoRAs do something


def test_weights_scale_linearly_and_are_not_diluted_by_rank(sd1_pair, tmp_path):
    first, second = map(read_any_lora, sd1_pair)
    half = read_any_lora(merge_loras([sd1_pair[0]], [0.5], tmp_path / "half.safetensors").path)
    both = read_any_lora(merge_loras(list(sd1_pair), [1.0, 1.0], tmp_path / "both.safetensors").path)
    for name, module in first.modules.items():
        torch.testing.assert_close(half.modules[name].delta(), 0.5 * module.delta(), rtol=1e-5, atol=1e-7)
        full = module.delta() + (second.modules[name].delta() if name in second.modules else 0)
        torch.testing.assert_close(both.modules[name].delta(), full, rtol=1e-5, atol=1e-6)


def test_svd_merge_reports_its_error_and_stays_within_it(sd1_pair, tmp_path):
    first, second = map(read_any_lora, sd1_pair)
    result = merge_loras(list(sd1_pair), [0.7, 0.3], tmp_path / "svd.safetensors", rank=3, conv_rank=2)
    merged = read_any_lora(result.path)
    assert {layer.rank for layer in result.layers} <= {2, 3} and result.max_error > 0
    for layer in result.layers:
        exact = _expected_delta(layer.name, [(first, 0.7), (second, 0.3)])
        module = merged.modules[layer.name]
        assert module.rank == (2 if module.is_conv else 3)
        actual = float((module.delta() - exact).norm() / exact.norm())
        assert actual <= layer.error + 1e-4 and actual == pytest.approx(layer.error, abs=1e-3)


def test_sdxl_exact_merge_and_its_block_names(tmp_path):
    first, _ = lora_file(tmp_path, "xl_a", "sdxl", LoraSpec(rank=3, alpha=5.0, conv_rank=2, conv_alpha=1.0), seed=0)
    second, _ = lora_file(tmp_path, "xl_b", "sdxl", LoraSpec(rank=2, alpha=2.0), seed=1)
    files = [read_any_lora(first), read_any_lora(second)]
    merged = read_any_lora(merge_loras([first, second], [0.3, 1.2], tmp_path / "xl.safetensors").path)
    assert merged.arch == "sdxl" and merged.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    for name, module in merged.modules.items():
        torch.testing.assert_close(module.delta(), _expected_delta(name, zip(files, (0.3, 1.2))), rtol=1e-5, atol=1e-6)
    assert {block_of(name) for name in merged.modules} >= {"BASE", "IN04", "M00", "OUT00"}
    assert block_of("lora_unet_output_blocks_2_1_transformer_blocks_0_attn1_to_q") == "OUT02"


def test_block_weights_scale_whole_blocks(sd1_pair, tmp_path):
    first = read_any_lora(sd1_pair[0])
    result = merge_loras([sd1_pair[0]], [1.0], tmp_path / "outd.safetensors", block_weights=["OUTD"])
    merged = read_any_lora(result.path)
    listed = {"BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00"} | {f"OUT{i:02d}" for i in range(3, 12)}
    kept = {block_of(name) for name in merged.modules} & listed
    assert kept == {block_of(name) for name in first.modules} & {"BASE", "OUT03", "OUT04", "OUT05", "OUT06"}
    assert "OUT03" in kept and "BASE" in kept
    assert len(merged.modules) < len(first.modules)
    for name, module in merged.modules.items():
        torch.testing.assert_close(module.delta(), first.modules[name].delta(), rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="17 comma-separated numbers"):
        merge_loras([sd1_pair[0]], [1.0], tmp_path / "bad.safetensors", block_weights=["1,0,1"])


def test_diffusers_key_style_reads_as_the_same_lora(sd1_pair, tmp_path):
    from peft.utils import get_peft_model_state_dict

    base = fresh("sd1")
    pipe = pipeline(base)
    pipe.load_lora_weights(str(sd1_pair[1]), adapter_name="default")
    pipe.save_lora_weights(tmp_path / "peft", unet_lora_layers=get_peft_model_state_dict(base.unet),
                           text_encoder_lora_layers=get_peft_model_state_dict(base.text_encoders[0]),
                           unet_lora_adapter_metadata=base.unet.peft_config["default"].to_dict(),
                           text_encoder_lora_adapter_metadata=base.text_encoders[0].peft_config["default"].to_dict())
    converted = read_any_lora(tmp_path / "peft" / "pytorch_lora_weights.safetensors")
    original = read_any_lora(sd1_pair[1])
    assert converted.source == "diffusers" and converted.modules.keys() == original.modules.keys()
    for name, module in original.modules.items():
        torch.testing.assert_close(converted.modules[name].delta(), module.delta(), rtol=1e-5, atol=1e-7)


def test_mismatched_base_models_are_refused_naming_both(sd1_pair, tmp_path):
    sdxl, _ = lora_file(tmp_path, "xl", "sdxl", LoraSpec(rank=2, alpha=2.0), metadata=False)
    with pytest.raises(UserError, match=r"style_a.safetensors is a LoRA for SD 1.x but xl.safetensors is for SDXL"):
        merge_loras([sd1_pair[0], sdxl], [0.5, 0.5], tmp_path / "no.safetensors")
    assert not (tmp_path / "no.safetensors").exists()


def test_dora_merge_without_a_base_is_refused_with_the_reason(sd1_pair, tmp_path):
    dora, _ = lora_file(tmp_path, "dora", "sd1", LoraSpec(rank=2, alpha=2.0, use_dora=True))
    with pytest.raises(UserError, match="DoRA.*base model.*--base"):
        merge_loras([sd1_pair[0], dora], [0.5, 0.5], tmp_path / "no.safetensors")


def test_dora_merge_on_the_base_equals_baking_the_inputs(sd1_pair, tiny_sd1_file, tmp_path):
    dora, _ = lora_file(tmp_path, "dora", "sd1", LoraSpec(rank=2, alpha=2.0, use_dora=True), seed=5)
    result = merge_loras([sd1_pair[0], dora], [0.7, 0.5], tmp_path / "mix.safetensors", base=tiny_sd1_file)
    assert result.max_error < 1e-5 and not read_any_lora(result.path).has_dora  # a plain LoRA, all values kept
    both = bake_loras(tiny_sd1_file, [sd1_pair[0], dora], [0.7, 0.5], tmp_path / "both.safetensors")
    single = bake_loras(tiny_sd1_file, [result.path], [1.0], tmp_path / "single.safetensors")
    expected, got, original = load_file(both.path), load_file(single.path), load_file(tiny_sd1_file)
    changed = [key for key in expected if not torch.equal(expected[key], original[key])]
    assert len(changed) > 50
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)


def test_a_file_that_is_not_a_lora_is_refused(tiny_sd1_file, tmp_path):
    with pytest.raises(UserError, match="is not a LoRA"):
        merge_loras([tiny_sd1_file], [1.0], tmp_path / "no.safetensors")


def test_an_llm_adapter_is_named_as_such_and_nothing_is_written(sd1_pair, tiny_llm, tiny_sd1_file, tmp_path):
    adapter = make_adapter(tiny_llm("llama"), tmp_path / "llm", 4, 1, ["q_proj", "v_proj"])
    weights = adapter / "adapter_model.safetensors"
    for tool in (lambda: merge_loras([sd1_pair[0], weights], [1.0, 1.0], tmp_path / "no.safetensors"),
                 lambda: bake_loras(tiny_sd1_file, [weights], [1.0], tmp_path / "no.safetensors"),
                 lambda: resize_lora(weights, tmp_path / "no.safetensors", rank=2)):
        with pytest.raises(UserError, match=rf"{weights} is a PEFT adapter of a language model .*llm merge"):
            tool()
    assert not (tmp_path / "no.safetensors").exists()


def test_output_is_never_overwritten(sd1_pair, tmp_path):
    target = tmp_path / "taken.safetensors"
    target.write_bytes(b"mine")
    with pytest.raises(UserError, match="never overwritten"):
        merge_loras(list(sd1_pair), [1.0, 1.0], target)
    assert target.read_bytes() == b"mine"


@pytest.mark.parametrize("style", ["peft", "attention-processor"])
def test_older_diffusers_key_styles_get_kohya_names(tmp_path, style):
    from safetensors.torch import save_file

    path = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    keys = ({"A": f"{path}.to_q.lora_A.weight", "B": f"{path}.to_q.lora_B.weight"} if style == "peft" else
            {"A": f"{path}.processor.to_q_lora.down.weight", "B": f"{path}.processor.to_q_lora.up.weight"})
    save_file({keys["A"]: torch.ones(2, 32), keys["B"]: torch.ones(32, 2), f"{path}.to_q.alpha": torch.tensor(1.0)},
              str(tmp_path / "old.safetensors"))
    lora = read_any_lora(tmp_path / "old.safetensors")
    module = lora.modules["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"]
    assert lora.source == "diffusers" and module.rank == 2 and module.alpha == 1.0


@pytest.mark.parametrize("option, value, message", [("--width", "0", "--width 0: give a size in pixels from 64"),
                                                    ("--height", "500", "--height 500: give a size in pixels"),
                                                    ("--steps", "0", "--steps 0: give at least 1 denoising step")])
def test_grid_refuses_sizes_and_steps_it_cannot_render(sd1_pair, tiny_sd1_file, tmp_path, capsys, option, value,
                                                       message):
    from lora_train.cli import main

    assert main(["grid", str(tiny_sd1_file), str(sd1_pair[0]), "--weights", "0.5", "--prompt", "x", option, value,
                 "--out-dir", str(tmp_path / "grid")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "grid").exists()
