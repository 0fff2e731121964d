"""The Flux family through `lora_train train`: the loss falls on held-out images for a dev-type (guidance) base
from a BFL single file and a Chroma base from a diffusers folder; the file's names, header and card; CLIP-L
LoRA; an interrupted run resumes to the same weights; pretrained_lora continues from a Flux file; fp8_base; bad Flux inputs end with one clear error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from flux_support import apply_lora_file, flow_loss, merged_from_file
from lora_train.core.errors import UserError
from lora_train.dit.base import load_flux_base
from lora_train.dit.flux_layout import bfl_modules, to_bfl
from lora_train.dit.source import flux_source
from lora_train.fixtures.tiny_flux import tiny_flux
from reliability_support import assert_clean_error, run_cli
from train_support import DATASET, train

pytestmark = pytest.mark.slow
IMAGES = sorted(DATASET.glob("*.png"))
TRAINED, HELD_OUT = IMAGES[:6], IMAGES[6:]
FLUX_FAST = {"t5xxl_max_token_length": 16, "train_text_encoder": False, "sample_steps": 0}


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def write_config(tmp_path, base_model, **settings):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for image in TRAINED:
        shutil.copy(image, data)
        shutil.copy(image.with_suffix(".txt"), data)
    values = {"base_model": str(base_model), "train_data_dir": str(data), "output_dir": str(tmp_path / "out"),
              "resolution": 64, "enable_bucket": False, "batch_size": 2, "epochs": 10, "lora_rank": 8,
              "lora_alpha": 8, "learning_rate": 3e-3, "optimizer": "adamw", "scheduler": "constant",
              "mixed_precision": "no", "save_precision": "fp32", "log_with": "none", "seed": 7, **FLUX_FAST, **settings}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("family, form", [("flux-dev", "transformer"), ("chroma", "diffusers")])
def test_loss_falls_on_held_out_images(tiny_flux_files, tmp_path, family, form):
    base_model = getattr(tiny_flux_files(family), form)
    outcome = run_cli(write_config(tmp_path, base_model), tmp_path)
    assert outcome.code == 0, outcome.stderr
    done = outcome.events[-1]
    assert done["type"] == "done"
    captions = [image.with_suffix(".txt").read_text() for image in HELD_OUT]
    base = load_flux_base(flux_source(base_model))
    before = flow_loss(base, HELD_OUT, captions)
    apply_lora_file(base.transformer, done["path"], chroma=family == "chroma")
    after = flow_loss(base, HELD_OUT, captions)
    assert after < 0.9 * before, f"held-out loss did not fall: {before:.4f} -> {after:.4f}"


@pytest.mark.parametrize("family, version, architecture", [
    ("flux-dev", "flux1", "flux-1-dev/lora"), ("flux-schnell", "flux1", "flux-1-schnell/lora"),
    ("chroma", "chroma", "chroma/lora")])
def test_the_file_s_names_header_and_card(tiny_flux_files, tmp_path, family, version, architecture):
    path, events = train(tiny_flux_files(family).all_in_one, tmp_path / "out", max_train_steps=2, trigger_word="lt",
                         flux_targets=["attention", "mlp", "modulation"], train_text_encoder=True, sample_steps=1,
                         t5xxl_max_token_length=16)
    with safe_open(str(path), "pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
    assert metadata["ss_base_model_version"] == version and metadata["modelspec.architecture"] == architecture
    assert metadata["ss_timestep_sampling"] == "sigmoid" and metadata["ss_guidance_scale"] == "1.0"
    assert metadata["ss_apply_t5_attn_mask"] == str(family == "chroma")
    assert "lora_unet_single_blocks_2_linear1.lora_down.weight" in keys
    assert ("lora_unet_double_blocks_1_txt_mod_lin.alpha" in keys) == (family != "chroma")
    assert any(key.startswith("lora_te1_text_model_encoder_layers_") for key in keys) == (family != "chroma")
    assert not any(key.startswith("lora_unet_transformer_blocks") for key in keys)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sd version"] == "Flux" and card["activation text"] == "lt"
    assert path.with_suffix(".preview.png").is_file()


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_flux_files, tmp_path):
    model = tiny_flux_files("flux-dev").transformer
    settings = dict(max_train_steps=5, save_steps=2, train_text_encoder=True, t5xxl_max_token_length=16,
                    timestep_sampling="shift", sample_steps=0, scheduler="cosine", warmup_steps=1)
    straight, _ = train(model, tmp_path / "a", **settings)
    _, events = train(model, tmp_path / "b", stop_at_step=3, **settings)
    assert events[-1]["interrupted"] and events[-1]["step"] == 3
    resumed, events = train(model, tmp_path / "b", resume_from_checkpoint="latest", **settings)
    assert [e["step"] for e in events if e["type"] == "step"] == [4, 5]
    expected, got = load_file(str(straight)), load_file(str(resumed))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_pretrained_lora_continues_from_a_flux_file(tiny_flux_files, tmp_path):
    model = tiny_flux_files("flux-dev").transformer
    settings = dict(FLUX_FAST, flux_targets=["attention", "mlp", "modulation"], train_text_encoder=True)
    first, _ = train(model, tmp_path / "first", max_train_steps=2, **settings)
    same, events = train(model, tmp_path / "again", max_train_steps=1, pretrained_lora=str(first), learning_rate=0.0,
                         text_encoder_lr=0.0, **settings)
    assert any("Continuing from" in event.get("message", "") for event in events)
    source, loaded = load_file(str(first)), load_file(str(same))
    assert source.keys() == loaded.keys()
    for key in source:
        torch.testing.assert_close(loaded[key], source[key], rtol=0, atol=1e-7, msg=key)


def test_pretrained_lora_trained_on_fused_layers_continues_exactly(tiny_flux_files, tmp_path):
    """A LoRA made on BFL's fused qkv / linear1 (kohya's default): dense ups, split over the parts at its rank."""
    files = tiny_flux_files("flux-schnell")
    generator = torch.Generator().manual_seed(3)
    modules = bfl_modules(tiny_flux("flux-schnell").transformer.config, chroma=False)
    bfl = to_bfl(tiny_flux("flux-schnell").transformer.state_dict(), modules)
    dense = {}
    for name in ("double_blocks.0.img_attn.qkv", "single_blocks.1.linear1", "single_blocks.2.linear2"):
        rows, cols = bfl[f"{name}.weight"].shape
        key = "lora_unet_" + name.replace(".", "_")
        dense[f"{key}.lora_down.weight"] = torch.randn(4, cols, generator=generator) * 0.1
        dense[f"{key}.lora_up.weight"] = torch.randn(rows, 4, generator=generator) * 0.1
        dense[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(dense, str(tmp_path / "fused.safetensors"))
    continued, _ = train(files.transformer, tmp_path / "out", max_train_steps=1, learning_rate=0.0,
                         pretrained_lora=str(tmp_path / "fused.safetensors"), **FLUX_FAST)
    expected = merged_from_file(bfl, dense, modules)
    got = merged_from_file(bfl, load_file(str(continued)), modules)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_an_sd_lora_does_not_continue_on_flux(tiny_flux_files, tmp_path):
    path = tmp_path / "sd.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(4, 2)}, str(path),
              {"ss_base_model_version": "sd_v1"})
    with pytest.raises(UserError, match=r"is a LoRA for SD 1.x models, but the base model is Flux.1-schnell"):
        train(tiny_flux_files("flux-schnell").transformer, tmp_path / "out", max_train_steps=1,
              pretrained_lora=str(path), **FLUX_FAST)


def test_block_selection_and_gradient_checkpointing(tiny_flux_files, tmp_path):
    model = tiny_flux_files("flux-dev").transformer
    path, plain = train(model, tmp_path / "plain", max_train_steps=3, train_double_block_indices="1",
                        train_single_block_indices="0,2", **FLUX_FAST)
    with safe_open(str(path), "pt") as handle:
        blocks = {f"{key.split('_')[2]}.{key.split('_')[4]}" for key in handle.keys()}
    assert blocks == {"double.1", "single.0", "single.2"}
    _, checkpointed = train(model, tmp_path / "checkpointed", max_train_steps=3, train_double_block_indices="1",
                            train_single_block_indices="0,2", gradient_checkpointing=True, **FLUX_FAST)
    losses = [[event["loss"] for event in events if event["type"] == "step"] for events in (plain, checkpointed)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    with pytest.raises(UserError, match=r"train_single_block_indices: 1-3 is outside this model's 3 blocks \(0-2\)"):
        train(model, tmp_path / "bad", max_train_steps=1, train_single_block_indices="1-3", **FLUX_FAST)


def test_fp8_base_follows_the_plain_run_within_one_percent(tiny_flux_files, tmp_path):
    """The same run with the transformer's linear weights kept in fp8 (upcast per layer): each step's loss within
    1% of the fp32 run's (measured: under 0.2%)."""
    model = tiny_flux_files("flux-dev").transformer
    curves = {}
    for fp8 in (False, True):
        _, events = train(model, tmp_path / f"fp8-{fp8}", max_train_steps=6, fp8_base=fp8, **FLUX_FAST)
        curves[fp8] = [event["loss"] for event in events if event["type"] == "step"]
    assert len(curves[True]) == 6 and len(curves[False]) == 6
    for plain, fp8 in zip(curves[False], curves[True]):
        assert abs(fp8 - plain) < 0.01 * plain, curves


def test_a_transformer_alone_ends_with_one_clear_error(tiny_flux_files, tmp_path):
    lone = tmp_path / "models" / "Stable-diffusion" / "flux1-dev.safetensors"
    lone.parent.mkdir(parents=True)
    shutil.copy(tiny_flux_files("flux-dev").transformer, lone)
    outcome = run_cli(write_config(tmp_path, lone), tmp_path)
    assert_clean_error(outcome, r"flux1-dev.safetensors holds the Flux transformer only, and no autoencoder \(AE\) "
                                r"was found: looked in the file itself and for ae.safetensors")


@pytest.mark.parametrize("settings, message", [
    ({"use_dora": True}, r"use_dora is a Stable Diffusion setting and cannot be used with Flux.1-dev"),
    ({"min_snr_gamma": 5.0}, r"min_snr_gamma .* use weighting_scheme for Flux"),
    ({"resolution": 72}, r"resolution is 72: Flux packs 2x2 patches .* multiple of 16"),
    ({"flux_targets": ["modulation"], "train_text_encoder": False}, None),
])
def test_settings_that_do_not_apply_to_flux_are_refused(tiny_flux_files, tmp_path, settings, message):
    files = tiny_flux_files("chroma" if message is None else "flux-dev")
    if message is None:  # Chroma has no modulation layers: nothing is selected
        message = r"No layer selected for LoRA: flux_targets \['modulation'\] .* \(Chroma has no modulation layers\)"
    with pytest.raises(UserError, match=message):
        train(files.transformer, tmp_path / "out", max_train_steps=1, **{**FLUX_FAST, **settings})


def test_chroma_refuses_an_unmasked_t5(tiny_flux_files, tmp_path):
    with pytest.raises(UserError, match=r"apply_t5_attn_mask: false does not work for Chroma"):
        train(tiny_flux_files("chroma").diffusers, tmp_path / "out", max_train_steps=1, apply_t5_attn_mask=False,
              **FLUX_FAST)
