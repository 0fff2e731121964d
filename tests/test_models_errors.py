"""Every way a base model can be wrong gets a UserError that names the file and says what to do."""

import argparse
import json
import re
import shutil

import pytest
import torch
from safetensors.torch import save_file

from lora_train.core.errors import UserError
from lora_train.models.load import load_base_model


def tensors_file(path, names, in_channels=4):
    """A .safetensors file holding small tensors with the given names (the UNet input conv gets
    `in_channels`, detection reads it)."""
    shapes = {name: (32, in_channels, 3, 3) if name.endswith("input_blocks.0.0.weight") else (2,) for name in names}
    save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(path))
    return path


SD_UNET = "model.diffusion_model.input_blocks.0.0.weight"
SD1_TEXT = "cond_stage_model.transformer.text_model.final_layer_norm.weight"
SD_VAE = "first_stage_model.decoder.conv_out.weight"

NOT_SD = {  # file -> (tensor names, words the message must have)
    "lora.safetensors": (["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
                          "lora_unet_down_blocks_0_attentions_0_proj_in.alpha"], ["is a LoRA", "models/Lora"]),
    "peft-lora.safetensors": (["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"], ["is a LoRA"]),
    "embedding.safetensors": (["emb_params"], ["textual-inversion embedding", "embeddings"]),
    "vae.safetensors": (["encoder.conv_in.weight", "decoder.conv_out.weight"], ["VAE only", "vae"]),
    "prefixed-vae.safetensors": (["first_stage_model.encoder.conv_in.weight", SD_VAE], ["VAE only"]),
    "unet.safetensors": (["conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"], ["diffusers UNet"]),
    "sd3.safetensors": (["model.diffusion_model.joint_blocks.37.x_block.mlp.fc1.weight"], ["Stable Diffusion 3"]),
    "flux.safetensors": (["double_blocks.0.img_attn.norm.key_norm.scale"], ["Flux.1-dev", "SDXL checkpoints only"]),
    "cascade.safetensors": (["clip_txt_mapper.weight"], ["Stable Cascade"]),
    "svd.safetensors": ([SD_UNET, "model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight"],
                        ["Stable Video Diffusion"]),
    "refiner.safetensors": ([SD_UNET, "conditioner.embedders.0.model.ln_final.weight"], ["SDXL refiner"]),
    "unet-only.safetensors": ([SD_UNET], ["no text encoder"]),
    "other.safetensors": (["some.weight"], ["does not look like a Stable Diffusion checkpoint"]),
}


@pytest.mark.parametrize("name", list(NOT_SD))
def test_files_that_are_not_sd_base_models_are_named_for_what_they_are(tmp_path, name):
    names, words = NOT_SD[name]
    path = tensors_file(tmp_path / name, names)
    with pytest.raises(UserError) as error:
        load_base_model(path)
    assert str(path) in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_inpainting_model_is_refused(tmp_path):
    path = tensors_file(tmp_path / "inpaint.safetensors", [SD_UNET, SD1_TEXT, SD_VAE], in_channels=9)
    with pytest.raises(UserError, match="is an inpainting model"):
        load_base_model(path)


BAD_BYTES = {  # file -> (content, words the message must have)
    "empty.safetensors": (b"", "is empty (0 bytes)"),
    "notes.safetensors": (b"just some notes about my favourite model, nothing else\n" * 3, "but a text file"),
    "lfs.safetensors": (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "Git LFS pointer"),
    "page.ckpt": (b"<!DOCTYPE html><html><body>rate limited</body></html>", "web page"),
    "noise.safetensors": (bytes(range(7, 256)) * 8, "is not a model checkpoint"),
    "broken.ckpt": (b"PK\x03\x04" + bytes(200), "not a readable checkpoint"),
}


@pytest.mark.parametrize("name", list(BAD_BYTES))
def test_files_that_are_not_checkpoints(tmp_path, name):
    content, words = BAD_BYTES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(words)) as error:
        load_base_model(path)
    assert str(path) in str(error.value)


def test_missing_file_and_missing_vae(tmp_path, tiny_sd1_file):
    with pytest.raises(UserError, match="Model file not found: .*nothing.safetensors"):
        load_base_model(tmp_path / "nothing.safetensors")
    with pytest.raises(UserError, match="VAE file not found: .*vae.pt"):
        load_base_model(tiny_sd1_file, vae_path=tmp_path / "vae.pt")


def test_truncated_safetensors(tmp_path, tiny_sd1_file):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(tiny_sd1_file.read_bytes()[:1_000_000])
    with pytest.raises(UserError, match="not a readable .safetensors file .* Download it again"):
        load_base_model(path)


def test_pickle_that_needs_code_is_refused_with_a_way_out(tmp_path):
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {SD_UNET: torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UserError, match=r"argparse.Namespace.*weights_only=True.*Convert it to .safetensors"):
        load_base_model(path)


def test_non_standard_shape_without_yaml_says_to_put_one_beside(copy_tiny_checkpoint):
    path = copy_tiny_checkpoint("sd1", yaml=False)
    with pytest.raises(UserError, match=r"UNet in .* does not match .* put the ldm config .* as tiny-sd1.yaml"):
        load_base_model(path)


def test_yaml_that_does_not_fit_the_checkpoint(copy_tiny_checkpoint):
    def wider(config):
        config["model"]["params"]["unet_config"]["params"]["channel_mult"] = [1, 3]

    with pytest.raises(UserError, match=r"with another shape .*tiny-sd1.yaml does not describe this checkpoint"):
        load_base_model(copy_tiny_checkpoint("sd1", edit_yaml=wider))


def test_broken_yaml(copy_tiny_checkpoint):
    path = copy_tiny_checkpoint("sd1")
    path.with_suffix(".yaml").write_text("model: [unclosed")
    with pytest.raises(UserError, match="tiny-sd1.yaml .* not valid YAML"):
        load_base_model(path)
    path.with_suffix(".yaml").write_text("model:\n  params: {}\n")
    with pytest.raises(UserError, match="tiny-sd1.yaml .* needs model.params with unet_config"):
        load_base_model(path)


def test_extra_and_missing_tensors_are_errors(copy_tiny_checkpoint):
    path = copy_tiny_checkpoint("sd1", edit_tensors=lambda t: t.update(
        {"model.diffusion_model.input_blocks.1.1.extra.weight": torch.ones(2)}))
    with pytest.raises(UserError, match=r"UNet in .* 1 not part of the model \(e.g. model.diffusion_model.input_blocks"):
        load_base_model(path)
    path = copy_tiny_checkpoint("sd1", edit_tensors=lambda t: t.pop(
        "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.bias"))
    with pytest.raises(UserError, match=r"text encoder under cond_stage_model.transformer. .* 1 missing .*fc1.bias"):
        load_base_model(path)


def test_checkpoint_without_vae_needs_a_vae_file(copy_tiny_checkpoint):
    def drop_vae(tensors):
        for key in [k for k in tensors if k.startswith("first_stage_model.")]:
            del tensors[key]

    with pytest.raises(UserError, match="has no VAE .* Give a separate VAE file"):
        load_base_model(copy_tiny_checkpoint("sd1", edit_tensors=drop_vae))


def test_bad_prediction_type(tiny_sd1_file):
    with pytest.raises(UserError, match="prediction_type: 'v' is not one of auto, epsilon, v_prediction"):
        load_base_model(tiny_sd1_file, prediction_type="v")


def test_diffusers_folders_with_parts_missing(tmp_path, tiny_sd1_diffusers):
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd1_diffusers, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(UserError, match=r"diffusers folder .*model has no weights in .*unet"):
        load_base_model(folder)
    shutil.rmtree(folder / "text_encoder")
    with pytest.raises(UserError, match=r"missing .*text_encoder/config.json"):
        load_base_model(folder)
    (folder / "scheduler" / "scheduler_config.json").unlink()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(UserError, match=r"missing .*scheduler_config.json"):
        load_base_model(folder)


def test_folders_that_are_not_sd_pipelines(tmp_path, tiny_sd1_diffusers):
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(UserError, match=r"diffusers folder .*flux is missing .*transformer/config.json"):
        load_base_model(flux)  # a FluxPipeline folder goes to the DiT engine, which names the missing part
    with pytest.raises(UserError, match=r"is a single diffusers model folder \(UNet2DConditionModel\), not a whole"):
        load_base_model(tiny_sd1_diffusers / "unet")
    with pytest.raises(UserError, match="is not a diffusers folder"):
        load_base_model(tmp_path)


def test_a_language_model_given_to_either_engine_is_named_for_what_it_is(tmp_path, capsys, tiny_llm,
                                                                          tiny_sd1_file, tiny_sd1_diffusers):
    from lora_train.text.model import classify_base_model

    with pytest.raises(UserError, match="is a transformers llama model folder, not a Stable Diffusion one: task_type: "
                                        "text-generation"):
        load_base_model(tiny_llm("llama"))
    for image_model, what in ((tiny_sd1_file, "a Stable Diffusion checkpoint"),
                              (tiny_sd1_diffusers, "a diffusers pipeline folder")):
        with pytest.raises(UserError, match=f"is {what} \\(an image model\\): train image LoRAs on it with "
                                            "task_type: image"):
            classify_base_model(str(image_model))
