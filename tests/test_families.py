"""The model-family plug-ins: the table says what the WebUI and kohya's tools read (labels, header names), the
recognisers tell files apart from what the families declare, and a new family is one module: a fourth UNet
family placed beside the others trains end to end through `train --config` and lands in its own names."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

import lora_train.families as families
from lora_train import cli
from lora_train.families import family, family_of_label, labels, titles, trained_families
from lora_train.families.interface import UnetParts
from lora_train.families.recognise import checkpoint_family, folder_family, lora_family
from lora_train.kohya.read import read_lora_file
from lora_train.tools.inspect import inspect_lora
from lora_train.webui.image_tab.presets import preset_choices, preset_form_values
from train_support import DATASET, FAST

# id -> label, title, ss_base_model_version (epsilon, v), modelspec.architecture (epsilon, v), ss_v2, preset resolution
NAMES = {
    "flux-dev": ("Flux", "Flux.1-dev", ("flux1", "flux1"), ("flux-1-dev/lora", "flux-1-dev/lora"), False, 1024),
    "chroma": ("Flux", "Chroma", ("chroma", "chroma"), ("chroma/lora", "chroma/lora"), False, 1024),
    "flux-schnell": ("Flux", "Flux.1-schnell", ("flux1", "flux1"), ("flux-1-schnell/lora", "flux-1-schnell/lora"),
                     False, 1024),
    "sd1": ("SD1", "SD 1.x", ("sd_v1", "sd_v1"), ("stable-diffusion-v1/lora", "stable-diffusion-v1/lora"), False, 512),
    "sd2": ("SD2", "SD 2.x", ("sd_v2", "sd_v2_v"),
            ("stable-diffusion-v2-512/lora", "stable-diffusion-v2-768-v/lora"), True, 768),
    "sdxl": ("SDXL", "SDXL", ("sdxl_base_v1-0", "sdxl_base_v1-0"),
             ("stable-diffusion-xl-v1-base/lora", "stable-diffusion-xl-v1-base/lora"), False, 1024),
}


def test_each_family_goes_by_the_names_the_webui_and_kohya_read():
    assert [row.id for row in trained_families()] == list(NAMES) and labels() == ("Flux", "SD1", "SD2", "SDXL")
    assert titles() == "Flux.1-dev, Chroma, Flux.1-schnell, SD 1.x, SD 2.x and SDXL"
    assert titles("or", UnetParts) == "SD 1.x, SD 2.x or SDXL"
    for id, (label, title, versions, architectures, v2, resolution) in NAMES.items():
        names = family(id).names
        assert (names.label, names.title, names.v2, family(id).default_resolution) == (label, title, v2, resolution)
        assert tuple(names.version(v) for v in (False, True)) == versions
        assert tuple(names.modelspec_architecture(v) for v in (False, True)) == architectures
        assert family_of_label(label) is next(row for row in trained_families() if row.names.label == label)
        assert preset_form_values(preset_choices(label)[0], label)["resolution"] == resolution
    assert preset_form_values("Character", None)["resolution"] == 512  # type unknown: SD1's
    with pytest.raises(KeyError, match="no trained model family 'flux1'"):
        family("flux1")


def test_checkpoints_and_folders_are_told_apart_by_what_each_family_declares(tiny_checkpoints):
    for arch, id in (("sd1", "sd1"), ("sd2", "sd2"), ("sdxl", "sdxl")):
        files = tiny_checkpoints(arch)
        with open(files.single_file, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            keys = [key for key in json.loads(handle.read(length)) if key != "__metadata__"]
        assert checkpoint_family(keys).id == id
        index = json.loads((files.diffusers / "model_index.json").read_text())
        config = lambda file: json.loads((files.diffusers / file).read_text())  # noqa: E731
        assert folder_family(index["_class_name"], config).id == id
    refused = checkpoint_family(["edm_mean", "conditioner.embedders.0.transformer.x", "conditioner.embedders.1.model.y"])
    assert not refused.trained and refused.title == "Playground v2.5"  # SDXL's encoders, refused by name first
    assert checkpoint_family(["model.diffusion_model.input_blocks.0.0.weight"]) is None


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model.", "diffusion_model."])
def test_flux_checkpoints_are_told_apart_under_every_bfl_prefix(prefix):
    blocks = [prefix + "double_blocks.0.img_attn.norm.key_norm.scale", prefix + "img_in.weight"]
    assert checkpoint_family(blocks + [prefix + "guidance_in.in_layer.weight"]).id == "flux-dev"
    assert checkpoint_family(blocks + [prefix + "distilled_guidance_layer.in_proj.weight"]).id == "chroma"
    assert checkpoint_family(blocks).id == "flux-schnell"
    flux2 = checkpoint_family(blocks + [prefix + "single_stream_modulation.lin.weight"])
    assert prefix == "diffusion_model." or (not flux2.trained and flux2.title == "FLUX.2")  # refused by name first


def test_flux_folders_by_pipeline_and_transformer_config():
    configs = {"transformer/config.json": {"guidance_embeds": True},
               "model_index.json": {"transformer": ["diffusers", "FluxTransformer2DModel"]}}
    assert folder_family("FluxPipeline", configs.get).id == "flux-dev"
    configs["transformer/config.json"] = {"guidance_embeds": False}
    assert folder_family("FluxPipeline", configs.get).id == "flux-schnell"
    chroma = {"transformer/config.json": {}, "model_index.json": {"transformer": ["diffusers", "ChromaTransformer2DModel"]}}
    assert folder_family("ChromaPipeline", chroma.get).id == "chroma"
    assert folder_family("FluxPipeline", chroma.get).id == "chroma"  # as Forge saves it


@pytest.mark.parametrize("shapes, metadata, expected", [
    ({"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768)}, {"ss_base_model_version": "sd_v1"},
     "sdxl"),  # SDXL's module names decide
    ({"lora_unet_a.lora_down.weight": (4, 320)}, {"ss_base_model_version": "sd_v2_v"}, "sd2"),
    ({"lora_unet_a.lora_down.weight": (4, 320)}, {"ss_v2": "True"}, "sd2"),  # old kohya files: only ss_v2
    ({"lora_unet_a.lora_down.weight": (4, 320)}, {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"},
     "sdxl"),
    ({"lora_unet_b_attn2_to_k.lora_down.weight": (4, 1024)}, {}, "sd2"),  # the cross-attention width
    ({"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768)}, {}, "sd1"),
    ({"lora_unet_a.lora_down.weight": (4, 320)}, {}, None),
    # Flux's block names decide before SDXL's lora_te1_ (a Flux CLIP-L LoRA has those); the variant by the header
    ({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 64),
      "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768)}, {}, "flux-dev"),
    ({"lora_unet_single_blocks_0_linear1.lora_down.weight": (4, 64)},
     {"ss_base_model_version": "flux1", "modelspec.architecture": "flux-1-schnell/lora"}, "flux-schnell"),
    ({"lora_unet_single_blocks_0_linear1.lora_down.weight": (4, 64)}, {"ss_base_model_version": "chroma"}, "chroma"),
])
def test_the_lora_sniffer_reads_names_then_the_header_then_widths(shapes, metadata, expected):
    found = lora_family(shapes, metadata)
    assert (found.id if found else None) == expected


FOURTH_FAMILY = '''"""SD1 under another name: what a new UNet family module looks like (a test's, placed beside the others)."""

from dataclasses import replace

from lora_train.families.interface import LoraSignature, Names
from lora_train.families.sd1 import FAMILIES as SD1

FAMILIES = (replace(
    SD1[0], id="sd1x",
    names=Names(label="SD1X", title="SD 1.x renamed", base_model_version="sd1x_v1", modelspec="sd1x-base"),
    lora=LoraSignature(header=(("ss_base_model_version", "sd1x"),), unet_context_width=768, text_encoder_width=768),
    default_resolution=640),)
'''


@pytest.fixture
def fourth_family(tmp_path, monkeypatch):
    """`sd1x.py` placed in the families' folder (a second entry of the package's path) and named in MODULES
    before sd1, so it claims SD1's checkpoints."""
    folder = tmp_path / "more_families"
    folder.mkdir()
    (folder / "sd1x.py").write_text(FOURTH_FAMILY, encoding="utf-8")
    monkeypatch.setattr(families, "__path__", [*families.__path__, str(folder)])
    monkeypatch.setattr(families, "MODULES", ("untrained", "sd1x", "sd1", "sd2", "sdxl"))
    yield family("sd1x")
    sys.modules.pop("lora_train.families.sd1x", None)


@pytest.mark.slow
def test_a_fourth_family_in_its_own_module_trains_end_to_end(fourth_family, tiny_sd1_file, tmp_path):
    assert labels() == ("SD1X", "SD1", "SD2", "SDXL") and preset_form_values("Style", "SD1X")["resolution"] == 640
    config = {**FAST, "base_model": str(tiny_sd1_file), "train_data_dir": str(DATASET),
              "output_dir": str(tmp_path / "out"), "output_name": "fourth", "max_train_steps": 2}
    config_path = tmp_path / "fourth.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert cli.main(["train", "--config", str(config_path), "--events", "none"]) == 0
    lora = tmp_path / "out" / "fourth.safetensors"
    _, header = read_lora_file(lora)
    assert (header["ss_base_model_version"], header["modelspec.architecture"]) == ("sd1x_v1", "sd1x-base/lora")
    assert header["ss_v2"] == "False" and header["modelspec.implementation"] == "diffusers"
    assert json.loads(lora.with_suffix(".json").read_text(encoding="utf-8"))["sd version"] == "SD1X"
    report = inspect_lora(lora)
    assert (report["architecture"], report["base_model"]) == ("sd1x", "SD 1.x renamed")
    assert report["modules"]["unet"] > 0 and (tmp_path / "out" / "fourth.preview.png").is_file()
