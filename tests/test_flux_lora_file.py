"""The Flux LoRA file (lora_train/dit/lora_file.py): kohya's BFL names, q / k / v (and a single block's
proj_mlp) fused exactly, and loaders giving the weights an independent merge gives: W + alpha / rank * up @ down
computed here from the file on the BFL-layout weights, the way Forge and ComfyUI apply it."""

from __future__ import annotations

import pytest
import torch
from diffusers import ChromaPipeline, FluxPipeline, FluxTransformer2DModel
from safetensors.torch import load_file, save_file

from lora_train.dit.flux_layout import bfl_modules, from_bfl, to_bfl
from lora_train.dit.lora_file import flux_lora_state_dict
from lora_train.dit.targets import flux_target_names
from lora_train.fixtures.tiny_flux import tiny_flux

from flux_support import ALL_KINDS, merged_by_peft, merged_from_file, with_lora


@pytest.mark.parametrize("family", ["flux-dev", "chroma"])
def test_the_file_merged_on_bfl_weights_is_the_trained_model(family):
    model = with_lora(tiny_flux(family).transformer, flux_target_names(tiny_flux(family).transformer, ALL_KINDS))
    lora = flux_lora_state_dict(model, None, family, "fp32")
    modules = bfl_modules(model.config, chroma=family == "chroma")
    assert any(key.startswith("lora_unet_single_blocks_2_linear1.") for key in lora)
    assert ("lora_unet_double_blocks_1_img_mod_lin.alpha" in lora) == (family != "chroma")
    assert lora["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape[0] == 12  # 3 parts of rank 4
    assert lora["lora_unet_double_blocks_0_img_attn_qkv.alpha"].item() == 9.0  # alpha / rank kept: 3 / 4
    expected = to_bfl(merged_by_peft(model), modules)
    got = merged_from_file(to_bfl(tiny_flux(family).transformer.state_dict(), modules), lora, modules)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_a_part_without_lora_adds_nothing_to_its_rows():
    transformer = tiny_flux("flux-schnell").transformer
    names = [n for n in flux_target_names(transformer, ALL_KINDS) if not n.endswith(("attn.to_k", "proj_mlp"))]
    model = with_lora(transformer, names)
    lora = flux_lora_state_dict(model, None, "flux-schnell", "fp32")
    up = lora["lora_unet_single_blocks_0_linear1.lora_up.weight"]
    assert up.shape == (3 * 96 + 384, 8) and lora["lora_unet_single_blocks_0_linear1.alpha"].item() == 6.0
    assert not up[96:192].any() and not up[288:].any()  # k and proj_mlp rows


def _diffusers_loadable(names):
    """diffusers' kohya-Flux loader splits single blocks' linear1 at Flux's widths (3072), so at tiny width the
    file may not hold linear1."""
    return [n for n in names if not (n.startswith("single_transformer_blocks.") and (".attn.to_" in n or "proj_mlp" in n))]


@pytest.mark.parametrize("family, pipeline_class", [("flux-dev", FluxPipeline), ("chroma", ChromaPipeline)])
def test_diffusers_load_lora_weights_gives_the_independent_merge(tiny_flux_files, tmp_path, family, pipeline_class):
    transformer = tiny_flux(family).transformer
    model = with_lora(transformer, _diffusers_loadable(flux_target_names(transformer, ALL_KINDS)))
    path = tmp_path / "flux-lora.safetensors"
    save_file(flux_lora_state_dict(model, None, family, "fp32"), str(path))
    modules = bfl_modules(model.config, chroma=family == "chroma")
    base = tiny_flux(family).transformer.state_dict()
    expected = merged_from_file(to_bfl(base, modules), load_file(path), modules)
    expected = dict(from_bfl(expected.__getitem__, modules, {key: value.shape for key, value in base.items()}))

    pipeline = pipeline_class.from_pretrained(str(tiny_flux_files(family).diffusers))
    pipeline.load_lora_weights(str(path))
    pipeline.fuse_lora(lora_scale=1.0)
    pipeline.unload_lora_weights()
    loaded = pipeline.transformer.state_dict()
    assert loaded.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(loaded[key], expected[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow
def test_diffusers_splits_single_blocks_linear1_at_flux_width(tmp_path):
    """One single block of Flux's real width (3072), where diffusers' loader can split linear1 (about 3 GB)."""
    def build():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return FluxTransformer2DModel(num_layers=0, num_single_layers=1, attention_head_dim=128,
                                          num_attention_heads=24, joint_attention_dim=16, pooled_projection_dim=16)

    model = build()
    model = with_lora(model, [n for n in flux_target_names(model, ALL_KINDS) if n.startswith("single_")])
    path = tmp_path / "flux-lora.safetensors"
    save_file(flux_lora_state_dict(model, None, "flux-schnell", "fp32"), str(path))
    expected = {key: value for key, value in merged_by_peft(model).items() if key.startswith("single_")}
    del model
    pipeline = FluxPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
                            tokenizer_2=None, transformer=build())
    pipeline.load_lora_weights(str(path))
    pipeline.fuse_lora(lora_scale=1.0)
    pipeline.unload_lora_weights()
    loaded = pipeline.transformer.state_dict()
    assert load_file(path)["lora_unet_single_blocks_0_linear1.lora_up.weight"].shape == (3 * 3072 + 4 * 3072, 16)
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=1e-5, msg=key)
