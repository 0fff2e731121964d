"""The LoRA tools on Flux.1 and Chroma LoRAs: `inspect` (family, module kinds, blocks, flow settings, the other
trainers' key styles), `merge` (exact and SVD, block weights), `resize` (fused qkv / linear1 included). The weights
a file gives are checked on BFL's layout against the LoRA layers' own update (`flux_tools_support.expected_bfl`)."""

from __future__ import annotations

import pytest
import torch
from flux_support import merged_from_file
from flux_tools_support import expected_bfl, flux_header, other_style_file, save_flux_lora

from lora_train.core.errors import UserError
from lora_train.dit.flux_layout import bfl_modules, to_bfl
from lora_train.families.flux import FLUX_BLOCKS
from lora_train.fixtures.tiny_flux import tiny_flux
from lora_train.kohya.write import save_lora
from lora_train.tools.blocks import parse_block_weights
from lora_train.tools.inspect import format_report, inspect_lora
from lora_train.tools.lora_file import module_tensors, read_any_lora
from lora_train.tools.merge import merge_loras
from lora_train.tools.resize import resize_lora
from lora_train.tools.lowrank import singular_values


def _weights_of(path, arch):
    """The BFL-layout base weights with the file's modules applied at strength 1, as Forge and ComfyUI apply them."""
    transformer = tiny_flux(arch).transformer
    modules = bfl_modules(transformer.config, chroma=arch == "chroma")
    lora = module_tensors(read_any_lora(path).modules, torch.float32)
    return merged_from_file(to_bfl(transformer.state_dict(), modules), lora, modules)


def _assert_same(got, expected, atol=1e-6):
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key].detach(), rtol=0, atol=atol, msg=key)


@pytest.mark.parametrize("arch, rank", [("flux-dev", 4), ("chroma", 2)])
def test_inspect_names_the_family_kinds_blocks_and_flow_settings(tmp_path, arch, rank):
    path, _ = save_flux_lora(tmp_path, "ours", arch, rank, rank / 2, single_blocks="0,2")
    report = inspect_lora(path)
    assert report["architecture"] == arch and report["format"] == "kohya"
    assert report["flux"]["double_blocks"] == [0, 1] and report["flux"]["single_blocks"] == [0, 2]
    kinds = {row["kind"]: row for row in report["flux"]["kinds"]}
    assert kinds["double img_attn_qkv"]["ranks"] == [3 * rank] and kinds["double img_attn_qkv"]["modules"] == 2
    assert kinds["single linear1"]["ranks"] == [4 * rank] and kinds["single linear1"]["alphas"] == [2.0 * rank]
    assert kinds["img_in"]["ranks"] == [rank]
    assert ("double img_mod_lin" in kinds) == (arch != "chroma")  # Chroma has no per-block modulation
    assert report["flux"]["flow"] == {"timestep_sampling": "shift", "discrete_flow_shift": "3.1582",
                                      "guidance_scale": "1.0"}
    assert [row["block"] for row in report["blocks"]] == ["IN", "D00", "D01", "S00", "S02"] + (
        ["OUT"] if arch == "flux-dev" else [])
    text = format_report(report)
    assert "Single blocks: 0, 2" in text and "transformer " in text and "discrete_flow_shift 3.1582" in text


@pytest.mark.parametrize("arch", ["flux-dev", "chroma"])
@pytest.mark.parametrize("style, label", [("diffusers", "diffusers / PEFT (transformer.*"),
                                          ("onetrainer", "OneTrainer (lora_transformer_*)"),
                                          ("bfl-peft", "BFL / PEFT (diffusion_model.*")])
def test_other_trainers_flux_styles_are_read_exactly(tmp_path, arch, style, label):
    path, model = save_flux_lora(tmp_path, "ours", arch, 3, 3.0)  # alpha = rank: diffusers files carry no alpha
    other = other_style_file(tmp_path, style, arch, model)
    report = inspect_lora(other)
    assert report["format"].startswith(label) and report["base_model"].startswith("Flux")  # no header: dev
    assert report["flux"]["kinds"] == inspect_lora(path)["flux"]["kinds"]  # q / k / v fused as ours
    _assert_same(_weights_of(other, arch), expected_bfl(arch, model))


def test_exact_merge_of_flux_loras_is_their_weighted_sum(tmp_path):
    first, first_model = save_flux_lora(tmp_path, "a", "flux-dev", 4, 2.0, seed=1)
    second, second_model = save_flux_lora(tmp_path, "b", "flux-dev", 2, 2.0, seed=2, kinds=("attention",))
    result = merge_loras([first, second], [0.7, -0.5], tmp_path / "mix.safetensors")
    merged = read_any_lora(result.path)
    assert merged.arch == "flux-dev" and merged.metadata["ss_timestep_sampling"] == "shift"
    assert merged.modules["lora_unet_double_blocks_0_img_attn_qkv"].rank == 3 * 4 + 3 * 2
    assert merged.modules["lora_unet_single_blocks_1_linear1"].rank == 4 * 4 + 3 * 2  # b: q, k, v of linear1
    base = to_bfl(tiny_flux("flux-dev").transformer.state_dict(), bfl_modules(tiny_flux("flux-dev").transformer.config,
                                                                                  chroma=False))
    a, b = expected_bfl("flux-dev", first_model, 0.7), expected_bfl("flux-dev", second_model, -0.5)
    _assert_same(_weights_of(result.path, "flux-dev"), {key: a[key] + b[key] - base[key] for key in base})


def test_svd_merge_and_resize_cut_fused_modules_to_the_best_rank(tmp_path):
    path, _ = save_flux_lora(tmp_path, "big", "chroma", 6, 3.0)
    source = read_any_lora(path)
    result = resize_lora(path, tmp_path / "small.safetensors", rank=5)
    resized = read_any_lora(result.path)
    assert resized.arch == "chroma" and resized.metadata["ss_discrete_flow_shift"] == "3.1582"
    for name in ("lora_unet_double_blocks_1_txt_attn_qkv", "lora_unet_single_blocks_0_linear1",
                 "lora_unet_single_blocks_2_linear2"):
        full = source.modules[name]
        u, s, vh = torch.linalg.svd(full.delta(), full_matrices=False)  # independent: the whole matrix
        best = (u[:, :5] * s[:5]) @ vh[:5]
        assert resized.modules[name].rank == 5
        torch.testing.assert_close(resized.modules[name].delta(), best, rtol=0, atol=1e-5)
        assert result.layers[name].error == pytest.approx(float(s[5:].square().sum().sqrt() / s.square().sum().sqrt()),
                                                          rel=1e-4)
    assert float(singular_values(source.modules["lora_unet_single_blocks_0_linear1"])[1][:24].min()) > 0  # 4 x 6
    merged = merge_loras([path], [1.0], tmp_path / "svd.safetensors", rank=3)
    assert {layer.rank for layer in merged.layers} == {3} and merged.max_error > 0


def test_block_weights_scale_flux_blocks_by_superMergers_ids(tmp_path):
    path, model = save_flux_lora(tmp_path, "a", "flux-dev", 2, 2.0)
    weights = {block: 1.0 for block in FLUX_BLOCKS.blocks} | {"D01": 0.0, "S02": 0.5, "IN": 0.25}
    text = ",".join(str(weights[block]) for block in FLUX_BLOCKS.blocks)
    result = merge_loras([path], [1.0], tmp_path / "blocks.safetensors", block_weights=[text])
    got, full = read_any_lora(result.path).modules, read_any_lora(path).modules
    assert not any(name.startswith("lora_unet_double_blocks_1_") for name in got)  # weight 0: left out
    for name, factor in (("lora_unet_single_blocks_2_linear1", 0.5), ("lora_unet_img_in", 0.25),
                         ("lora_unet_double_blocks_0_img_mlp_0", 1.0), ("lora_unet_txt_in", 0.25),
                         ("lora_unet_final_layer_adaLN_modulation_1", 1.0)):
        torch.testing.assert_close(got[name].delta(), factor * full[name].delta(), rtol=0, atol=1e-6)
    assert len(FLUX_BLOCKS.blocks) == 61
    assert parse_block_weights("NONE", "flux-dev") == {block: 0.0 for block in FLUX_BLOCKS.blocks}
    with pytest.raises(UserError, match="names UNet blocks.*ALL, NONE or 61"):
        parse_block_weights("OUTD", "chroma")
    with pytest.raises(UserError, match=r"61 comma-separated numbers for Flux \(CLIP, T5, IN, D00"):
        parse_block_weights(",".join(["1"] * 17), "flux-dev")


def test_flux_loras_of_different_families_are_not_merged(tmp_path):
    first, _ = save_flux_lora(tmp_path, "dev", "flux-dev", 2, 2.0)
    second, model = save_flux_lora(tmp_path, "chroma", "chroma", 2, 2.0)
    with pytest.raises(UserError, match="dev.safetensors is a LoRA for Flux.1-dev but chroma.safetensors is for Chroma"):
        merge_loras([first, second], [1, 1], tmp_path / "mix.safetensors")
    assert not (tmp_path / "mix.safetensors").exists()
    relabelled = save_lora(tmp_path / "schnell.safetensors", module_tensors(read_any_lora(second).modules,
                                                                             torch.float32), flux_header("flux-schnell"))
    assert inspect_lora(relabelled)["base_model"] == "Flux.1-schnell"
