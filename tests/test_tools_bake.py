"""`bake`: a baked checkpoint equals the base with the LoRA at weight 1 (SD1 with LoCon, SD2's fused OpenCLIP
q/k/v, SDXL, DoRA as the WebUI applies it), loads in the engine and in diffusers, trains again, keeps the
base's precision and layout, handles the inpainting input conv, and refuses what it cannot do."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_export_support import fresh, inject, randomize, text_outputs, unet_inputs, unet_output
from tools_support import lora_file, max_difference
from train_support import train

from lora_train.adapters.spec import LoraSpec
from lora_train.core.errors import UserError
from lora_train.kohya.state import kohya_state_dict
from lora_train.kohya.write import save_lora
from lora_train.models.load import load_base_model
from lora_train.tools.bake import bake_loras

CASES = {"sd1-locon": ("sd1", LoraSpec(rank=4, alpha=2.0, conv_rank=3, conv_alpha=1.0)),
         "sd2-fused-text-encoder": ("sd2", LoraSpec(rank=4, alpha=8.0)),
         "sdxl": ("sdxl", LoraSpec(rank=3, alpha=5.0)),
         "sd1-dora": ("sd1", LoraSpec(rank=4, alpha=4.0, use_dora=True))}


def _assert_same_model(baked, model):
    inputs = unet_inputs(model)
    torch.testing.assert_close(unet_output(baked.unet, inputs), unet_output(model.unet, inputs), rtol=1e-4, atol=1e-5)
    for got, expected in zip(text_outputs(baked.text_encoders), text_outputs(model.text_encoders)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_baked_checkpoint_equals_base_plus_lora(case, tiny_checkpoints, tmp_path):
    arch, spec = CASES[case]
    files = tiny_checkpoints(arch)
    lora, model = lora_file(tmp_path, "lora", arch, spec, seed=3)
    result = bake_loras(files.single_file, [lora], [1.0], tmp_path / "baked.safetensors")
    assert result.layout == "single-file" and result.modules == len(load_file(lora)) // (3 + spec.use_dora)
    baked = load_base_model(result.path)  # the yaml was copied beside it, as the WebUI needs
    _assert_same_model(baked, model)
    base = load_base_model(files.single_file)
    inputs = unet_inputs(model)
    assert max_difference(unet_output(base.unet, inputs), unet_output(baked.unet, inputs)) > 1e-2
    assert load_file(result.path).keys() == load_file(files.single_file).keys()  # the same layout, extras kept


@pytest.mark.slow
def test_diffusers_folder_base_bakes_to_a_single_file_that_diffusers_loads_and_that_trains(tiny_checkpoints, tmp_path):
    from diffusers import StableDiffusionPipeline

    files = tiny_checkpoints("sd1")
    first, model = lora_file(tmp_path, "a", "sd1", LoraSpec(rank=4, alpha=2.0), seed=3)
    second, _ = lora_file(tmp_path, "b", "sd1", LoraSpec(rank=2, alpha=2.0), seed=4)
    result = bake_loras(files.diffusers, [first, second], [1.0, 0.0], tmp_path / "baked.safetensors")
    assert result.layout.startswith("diffusers folder")
    assert (tmp_path / "baked.yaml").is_file()  # a tiny model needs its config beside it: bake wrote it
    _assert_same_model(load_base_model(result.path), model)

    pipe = StableDiffusionPipeline.from_single_file(str(result.path), config=str(files.diffusers),
                                                    local_files_only=True, safety_checker=None)
    inputs = unet_inputs(model)
    torch.testing.assert_close(unet_output(pipe.unet, inputs), unet_output(model.unet, inputs), rtol=1e-4, atol=1e-5)

    lora_path, events = train(result.path, tmp_path / "again", max_train_steps=2)
    losses = [event["loss"] for event in events if event["type"] == "step"]
    assert lora_path.is_file() and len(losses) == 2 and all(loss == loss for loss in losses)


def test_half_precision_base_stays_half_and_is_computed_in_fp32(copy_tiny_checkpoint, tmp_path):
    half = copy_tiny_checkpoint("sd1", edit_tensors=lambda t: t.update({k: v.half() for k, v in t.items()
                                                                          if v.is_floating_point()}))
    lora, model = lora_file(tmp_path, "lora", "sd1", LoraSpec(rank=4, alpha=4.0), seed=3)
    result = bake_loras(half, [lora], [0.5], tmp_path / "baked.safetensors")
    before, after = load_file(half), load_file(result.path)
    assert {value.dtype for value in after.values() if value.is_floating_point()} == {torch.float16}
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    tensors = load_file(lora)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    delta = tensors[f"{name}.alpha"] / 4 * tensors[f"{name}.lora_up.weight"] @ tensors[f"{name}.lora_down.weight"]
    torch.testing.assert_close(after[key], (before[key].float() + 0.5 * delta).half())


def test_inpainting_input_conv_gets_the_change_on_its_latent_channels(copy_tiny_checkpoint, tmp_path):
    key = "model.diffusion_model.input_blocks.0.0.weight"

    def nine_channels(tensors):
        weight = tensors[key]
        tensors[key] = torch.cat([weight, torch.randn(weight.shape[0], 5, *weight.shape[2:])], dim=1)

    base = copy_tiny_checkpoint("sd1", edit_tensors=nine_channels)
    generator = torch.Generator().manual_seed(0)
    lora = {"lora_unet_conv_in.lora_down.weight": torch.randn(2, 4, 3, 3, generator=generator),
            "lora_unet_conv_in.lora_up.weight": torch.randn(32, 2, 1, 1, generator=generator),
            "lora_unet_conv_in.alpha": torch.tensor(1.0)}
    save_file(lora, str(tmp_path / "conv_in.safetensors"), {"ss_base_model_version": "sd_v1"})
    result = bake_loras(base, [tmp_path / "conv_in.safetensors"], [1.0], tmp_path / "inpaint.safetensors")
    before, after = load_file(base)[key], load_file(result.path)[key]
    delta = 0.5 * (lora["lora_unet_conv_in.lora_up.weight"].flatten(1) @ lora["lora_unet_conv_in.lora_down.weight"]
                   .flatten(1)).reshape(32, 4, 3, 3)
    torch.testing.assert_close(after[:, :4], before[:, :4] + delta)
    assert torch.equal(after[:, 4:], before[:, 4:])


def test_refusals(tiny_sd1_file, tmp_path):
    xl, _ = lora_file(tmp_path, "xl", "sdxl", LoraSpec(rank=2, alpha=2.0), metadata=False)
    with pytest.raises(UserError, match="xl.safetensors is a LoRA for SDXL but the base tiny-sd1.safetensors is SD 1"):
        bake_loras(tiny_sd1_file, [xl], [1.0], tmp_path / "no.safetensors")
    with pytest.raises(UserError, match="never overwritten"):
        bake_loras(tiny_sd1_file, [xl], [1.0], tiny_sd1_file)
    with pytest.raises(UserError, match="is not a LoRA"):
        bake_loras(tiny_sd1_file, [tiny_sd1_file], [1.0], tmp_path / "no.safetensors")
    assert not (tmp_path / "no.safetensors").exists()


def test_cli_bakes_and_prints_what_it_did(tiny_sd1_file, tmp_path, capsys):
    from lora_train.cli import main

    lora, _ = lora_file(tmp_path, "lora", "sd1", LoraSpec(rank=2, alpha=2.0))
    out = str(tmp_path / "new.safetensors")
    assert main(["bake", str(tiny_sd1_file), str(lora), "--weights", "0.8", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "single-file layout, float32" in printed and "Copied the model config" in printed
    assert main(["bake", str(tiny_sd1_file), str(lora), "--out", str(tmp_path / "new.safetensors")]) == 2
    assert "already exists and is never overwritten" in capsys.readouterr().err


def _odd_layout_model():
    """The tiny SD1 with a UNet of another block layout: three levels of one ResNet each."""
    from diffusers import UNet2DConditionModel

    model = fresh("sd1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model.unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32, 64),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
            attention_head_dim=4, norm_num_groups=32)
    return model


def _lora_of(model, folder, name, seed):
    """(path, the model carrying it) of a random LoRA on this model."""
    import copy

    carrying = inject(copy.deepcopy(model), LoraSpec(rank=4, alpha=2.0))
    randomize(carrying, seed)
    path = save_lora(folder / f"{name}.safetensors", kohya_state_dict("sd1", carrying.unet, carrying.text_encoders,
                                                                      "fp32"), {"ss_base_model_version": "sd_v1"})
    return path, carrying


@pytest.mark.slow
def test_a_diffusers_folder_of_any_unet_layout_bakes_into_a_file_that_trains_and_bakes_again(tmp_path):
    from lora_train.fixtures.checkpoints import diffusers_pipeline

    base = _odd_layout_model()
    folder = tmp_path / "odd-diffusers"
    diffusers_pipeline(base).save_pretrained(folder)
    first, with_first = _lora_of(base, tmp_path, "first", 3)
    second, _ = _lora_of(base, tmp_path, "second", 4)
    result = bake_loras(folder, [first], [1.0], tmp_path / "baked.safetensors")
    assert "the UNet is not of the standard SD 1.x shape" in " ".join(result.notes)
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (result.path, tmp_path / "baked.yaml", tmp_path / "baked-text-encoder" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    _assert_same_model(load_base_model(result.path), with_first)

    again = bake_loras(result.path, [second], [1.0], tmp_path / "again.safetensors")
    both = bake_loras(folder, [first, second], [1.0, 1.0], tmp_path / "both.safetensors")
    assert again.modules == both.modules // 2 and not [note for note in again.notes if "skipped" in note]
    expected = load_file(both.path)
    for key, value in load_file(again.path).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)

    lora_path, events = train(result.path, tmp_path / "trained", max_train_steps=1)
    assert lora_path.is_file() and [event["loss"] for event in events if event["type"] == "step"]


def test_a_single_file_of_another_shape_without_its_yaml_is_refused_before_baking(tiny_sd1_file, tmp_path):
    copy = tmp_path / "no-yaml.safetensors"
    shutil.copy(tiny_sd1_file, copy)
    lora, _ = lora_file(tmp_path, "lora", "sd1", LoraSpec(rank=2, alpha=2.0))
    with pytest.raises(UserError, match=r"The UNet in .*no-yaml.safetensors does not match its model config.*"
                                        r"put the ldm config it was made with beside it as no-yaml.yaml"):
        bake_loras(copy, [lora], [1.0], tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists() and not (tmp_path / "out.yaml").exists()
