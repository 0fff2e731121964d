"""Bad Flux-family inputs get a clear message naming the file and what to do: missing parts, parts that do not
belong together, variants and families that are not trained."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from lora_train.core.errors import UserError
from lora_train.dit.base import PartPaths, load_flux_base
from lora_train.dit.source import flux_source
from lora_train.fixtures.flux_files import t5_state_dict
from lora_train.fixtures.tiny_flux import tiny_flux


def lone_copy(files, folder, name="flux.safetensors", edit=None):
    """The tiny BFL transformer alone in `folder`, its tensors changed by `edit(dict)`."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if edit:
        tensors = load_file(files.transformer)
        edit(tensors)
        save_file(tensors, str(target))
    else:
        shutil.copy(files.transformer, target)
    return target


def load(path, **paths):
    return load_flux_base(flux_source(path), PartPaths(**paths))


def test_a_transformer_alone_names_the_missing_autoencoder_and_where_it_looked(tiny_flux_files, tmp_path):
    path = lone_copy(tiny_flux_files("flux-dev"), tmp_path / "models" / "Stable-diffusion")
    (tmp_path / "models" / "VAE").mkdir()
    with pytest.raises(UserError) as error:
        load(path)
    text = str(error.value)
    assert "no autoencoder (AE) was found" in text and "ae.safetensors" in text
    assert str(tmp_path / "models" / "VAE") in text and "config key ae" in text


def test_missing_t5_and_its_tokenizer(tiny_flux_files, tmp_path):
    files = tiny_flux_files("chroma")
    path = lone_copy(files, tmp_path)
    with pytest.raises(UserError, match=r"no T5-XXL text encoder was found.*config key t5xxl"):
        load(path, ae=str(files.ae))
    shutil.copy(files.t5xxl, tmp_path / "t5xxl_fp16.safetensors")  # found beside, but not its tokenizer
    with pytest.raises(UserError, match=r"No tokenizer for the T5 encoder .*Set t5xxl_tokenizer"):
        load(path, ae=str(files.ae))


def test_a_t5_of_the_wrong_width_is_refused(tiny_flux_files, tmp_path):
    files = tiny_flux_files("flux-schnell")
    model = tiny_flux("flux-schnell")
    wide = type(model.t5)(type(model.t5.config)(**{**model.t5.config.to_dict(), "d_model": 56}))
    save_file(t5_state_dict(dataclasses.replace(model, t5=wide)), str(tmp_path / "t5-wide.safetensors"))
    with pytest.raises(UserError, match=r"The T5 encoder \(.*t5-wide.safetensors\) is 56 wide, but the transformer "
                                        r"in .* takes 40-wide text"):
        load(files.transformer, t5xxl=str(tmp_path / "t5-wide.safetensors"), t5xxl_tokenizer=str(files.t5_tokenizer))


def test_a_part_of_another_kind_is_named(tiny_flux_files):
    files = tiny_flux_files("flux-dev")
    with pytest.raises(UserError, match=r"T5-XXL text encoder in .*clip_l.safetensors has no shared.weight"):
        load(files.transformer, t5xxl=str(files.clip_l))
    with pytest.raises(UserError, match=r"autoencoder \(AE\) in .*t5xxl.safetensors has no autoencoder weights"):
        load(files.transformer, ae=str(files.t5xxl))


def test_kontext_fill_and_depth_are_refused(tiny_flux_files, tmp_path):
    files = tiny_flux_files("flux-dev")
    with pytest.raises(UserError, match=r"is a Flux.1 Kontext \(image editing\) model"):
        flux_source(lone_copy(files, tmp_path, "flux1-kontext-dev.safetensors"))

    def widen(channels):
        def edit(tensors):
            tensors["img_in.weight"] = torch.zeros(tensors["img_in.weight"].shape[0], channels)
        return edit

    with pytest.raises(UserError, match=r"is a Flux.1 Fill \(inpainting\) model, not a text-to-image base"):
        flux_source(lone_copy(files, tmp_path, "fill.safetensors", widen(384)))
    with pytest.raises(UserError, match=r"is a Flux.1 Depth / Canny"):
        flux_source(lone_copy(files, tmp_path, "depth.safetensors", widen(128)))


@pytest.mark.parametrize("family, names", [
    ("Flux.2", ["double_stream_modulation_img.lin.weight", "double_blocks.0.img_attn.norm.key_norm.scale"]),
    ("Z-Image", ["model.diffusion_model.layers.0.adaLN_modulation.0.weight", "cap_embedder.0.weight"]),
    ("Qwen-Image", ["txt_norm.weight", "transformer_blocks.0.img_mod.1.weight", "img_in.weight"]),
])
def test_other_dit_families_given_as_flux_are_refused_by_name(tmp_path, family, names):
    path = tmp_path / "flux1-dev.safetensors"
    save_file({name: torch.zeros(2, 2) for name in names}, str(path))
    with pytest.raises(UserError, match=rf"is a {family} model, not Flux.1: lora_train trains Flux.1"):
        flux_source(path)


def test_an_incomplete_transformer_names_what_is_missing(tiny_flux_files, tmp_path):
    files = tiny_flux_files("flux-dev")
    cut = lone_copy(files, tmp_path, edit=lambda t: [t.pop(k) for k in list(t) if k.startswith("single_blocks.1.")])
    with pytest.raises(UserError, match=r"single_blocks \[1\] are missing: the file is incomplete"):
        flux_source(cut)
    gone = lone_copy(files, tmp_path, "gone.safetensors", lambda t: t.pop("double_blocks.1.txt_attn.proj.bias"))
    with pytest.raises(UserError, match=r"1 missing \(e.g. double_blocks.1.txt_attn.proj.bias\)"):
        load(gone, ae=str(files.ae), clip_l=str(files.clip_l), t5xxl=str(files.t5xxl))


def test_folders_of_other_flux_pipelines_are_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}))
    with pytest.raises(UserError, match=r"holds a FluxKontextPipeline \(Flux.1 Kontext\) model"):
        flux_source(tmp_path)


def test_sd_checkpoints_are_not_flux(tiny_checkpoints):
    assert flux_source(tiny_checkpoints("sd1").single_file) is None
    assert flux_source(tiny_checkpoints("sd1").diffusers) is None


def test_a_flux_lora_is_not_merged_with_an_sdxl_one(tmp_path):
    import subprocess
    import sys

    def lora(name, module, metadata):
        path = tmp_path / name
        save_file({f"{module}.lora_down.weight": torch.zeros(2, 4), f"{module}.lora_up.weight": torch.zeros(4, 2),
                   f"{module}.alpha": torch.tensor(2.0)}, str(path), metadata)
        return str(path)

    flux = lora("flux.safetensors", "lora_unet_double_blocks_0_img_attn_qkv",
                {"ss_base_model_version": "flux1", "modelspec.architecture": "flux-1-dev/lora"})
    sdxl = lora("sdxl.safetensors", "lora_unet_input_blocks_4_1_proj_in", {"ss_base_model_version": "sdxl_base_v1-0"})
    result = subprocess.run([sys.executable, "-m", "lora_train", "merge", flux, sdxl, "--weights", "0.5", "0.5",
                             "--out", str(tmp_path / "mix.safetensors")], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert ("flux.safetensors is a LoRA for Flux.1-dev but sdxl.safetensors is for SDXL: LoRAs for different base "
            "models cannot be merged") in result.stderr + result.stdout
