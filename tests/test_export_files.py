"""Saved files: header metadata and hashes, never-overwriting versioned names, atomic writes that leave
nothing behind on a disk error, safe names, and the WebUI card's sidecar and preview."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from lora_train.adapters.spec import LoraSpec
from lora_train.core.errors import UserError
from lora_train.core import atomic
from lora_train.kohya.hashes import file_model_hash
from lora_train.kohya.metadata import TrainingRun, build_metadata
from lora_train.core.naming import check_output_name, free_lora_path
from lora_train.core.card import sidecar, write_preview, write_sidecar
from lora_train.kohya.write import save_lora

TENSORS = {"lora_unet_a.lora_down.weight": torch.arange(8, dtype=torch.float16).reshape(2, 4),
           "lora_unet_a.lora_up.weight": torch.ones(4, 2, dtype=torch.float16),
           "lora_unet_a.alpha": torch.tensor(1.0)}


def run(**overrides) -> TrainingRun:
    values = dict(output_name="my_style", base_model="/models/Stable-diffusion/anything-v5.safetensors",
                  family="sd1", resolution=512,
                  started_at=1700000000.5, finished_at=1700003600.25, steps=400, num_epochs=10,
                  num_train_images=40, learning_rate=1e-4, unet_lr=1e-4, text_encoder_lr=5e-5, seed=42,
                  training_comment="first try", trigger_words="mystyle",
                  tag_frequency={"10_mystyle": {"mystyle": 40, "1girl": 12}},
                  dataset_dirs={"10_mystyle": {"n_repeats": 10, "img_count": 4}})
    values.update(overrides)
    return TrainingRun(**values)


def test_sd1_metadata_is_what_kohya_writes():
    metadata = build_metadata(LoraSpec(rank=16, alpha=8.0), run())
    assert all(isinstance(value, str) for value in metadata.values())
    assert metadata["ss_network_module"] == "networks.lora"
    assert (metadata["ss_network_dim"], metadata["ss_network_alpha"]) == ("16", "8.0")
    assert (metadata["ss_base_model_version"], metadata["ss_v2"]) == ("sd_v1", "False")
    assert metadata["ss_sd_model_name"] == "anything-v5.safetensors"
    assert metadata["ss_output_name"] == "my_style" and metadata["ss_resolution"] == "(512, 512)"
    assert json.loads(metadata["ss_tag_frequency"]) == {"10_mystyle": {"mystyle": 40, "1girl": 12}}
    assert json.loads(metadata["ss_dataset_dirs"]) == {"10_mystyle": {"n_repeats": 10, "img_count": 4}}
    assert (metadata["ss_steps"], metadata["ss_num_epochs"], metadata["ss_num_train_images"]) == ("400", "10", "40")
    assert (metadata["ss_learning_rate"], metadata["ss_unet_lr"], metadata["ss_text_encoder_lr"]) == (
        "0.0001", "0.0001", "5e-05")
    assert float(metadata["ss_training_started_at"]) == 1700000000.5
    assert float(metadata["ss_training_finished_at"]) == 1700003600.25
    assert metadata["ss_training_comment"] == "first try" and metadata["ss_seed"] == "42"
    assert "ss_network_args" not in metadata
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert metadata["modelspec.implementation"] == "diffusers"
    assert metadata["modelspec.title"] == "my_style" and metadata["modelspec.resolution"] == "512x512"
    assert metadata["modelspec.trigger_phrase"] == "mystyle" and metadata["modelspec.prediction_type"] == "epsilon"
    assert metadata["modelspec.date"].startswith("2023-11-1")
    assert metadata["modelspec.sai_model_spec"] == "1.0.1"


def test_sdxl_and_v_prediction_and_network_args():
    sdxl = build_metadata(LoraSpec(rank=8, alpha=4.0, conv_rank=4, conv_alpha=1.0, use_dora=True),
                          run(family="sdxl", resolution=(1024, 768), trigger_words=""))
    assert sdxl["ss_base_model_version"] == "sdxl_base_v1-0" and sdxl["ss_v2"] == "False"
    assert sdxl["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert sdxl["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
    assert sdxl["modelspec.resolution"] == "1024x768" and "modelspec.trigger_phrase" not in sdxl
    assert json.loads(sdxl["ss_network_args"]) == {"conv_dim": "4", "conv_alpha": "1.0", "dora_wd": "True"}
    v = build_metadata(LoraSpec(rank=8, alpha=8.0), run(family="sd2", v_prediction=True))
    assert v["ss_v2"] == "True" and v["modelspec.prediction_type"] == "v"
    assert (v["ss_base_model_version"], v["modelspec.architecture"]) == ("sd_v2_v", "stable-diffusion-v2-768-v/lora")


def test_saved_file_has_the_metadata_and_kohyas_hashes(tmp_path):
    path = save_lora(tmp_path / "a.safetensors", TENSORS, {"ss_output_name": "a", "modelspec.title": "a"})
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        assert handle.get_tensor("lora_unet_a.lora_down.weight").dtype == torch.float16
    assert header["ss_output_name"] == "a" and header["modelspec.title"] == "a"
    assert header["sshs_model_hash"] == file_model_hash(path)  # what the WebUI computes from the file
    assert len(header["sshs_legacy_hash"]) == 8
    other = save_lora(tmp_path / "b.safetensors", TENSORS, {"ss_output_name": "b", "modelspec.title": "b"})
    assert file_model_hash(other) == header["sshs_model_hash"]  # the tensor bytes alone decide it


def test_free_names_version_instead_of_overwriting(tmp_path):
    first = free_lora_path(tmp_path, "style")
    assert first.name == "style.safetensors"
    save_lora(first, TENSORS, {})
    with pytest.raises(UserError, match="never overwritten"):
        save_lora(first, TENSORS, {})
    assert free_lora_path(tmp_path, "style").name == "style_v2.safetensors"
    (tmp_path / "style_v2.json").write_text("{}")  # a card left behind also holds its name
    assert free_lora_path(tmp_path, "style").name == "style_v3.safetensors"
    assert free_lora_path(tmp_path, "style", epoch=4).name == "style-000004.safetensors"
    save_lora(tmp_path / "style-000004.safetensors", TENSORS, {})
    assert free_lora_path(tmp_path, "style", epoch=4).name == "style-000004_v2.safetensors"


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", "", " ", "con:1", "tab\there", "dot."])
def test_unsafe_output_names_are_refused(name, tmp_path):
    with pytest.raises(UserError, match="output_name"):
        free_lora_path(tmp_path, name)


def test_ordinary_names_pass():
    for name in ("my_lora", "Style v1.5", "キャラ-01"):
        assert check_output_name(name) == name


def _leftovers(folder):
    return sorted(os.listdir(folder))


def test_a_full_disk_leaves_no_file_and_names_the_folder(tmp_path, monkeypatch):
    def full(_descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(UserError, match=f"Not enough free space in {tmp_path}"):
        save_lora(tmp_path / "a.safetensors", TENSORS, {})
    assert _leftovers(tmp_path) == []


def test_an_unwritable_folder_is_a_clear_error(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(UserError, match=f"Cannot write to the folder {tmp_path}"):
        save_lora(tmp_path / "a.safetensors", TENSORS, {})
    assert _leftovers(tmp_path) == []


def test_a_write_that_dies_midway_leaves_nothing(tmp_path):
    def dies(temporary):
        temporary.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.write_new_file(tmp_path / "a.safetensors", dies)
    assert _leftovers(tmp_path) == []


def test_sidecar_is_what_the_webui_card_editor_writes(tmp_path):
    lora = tmp_path / "style.safetensors"
    card = sidecar(sd_version="SDXL", activation_text="mystyle, ネコ", preferred_weight=0.8, description="A style",
                   notes="trained on 40 images")
    path = write_sidecar(lora, card)
    assert path == tmp_path / "style.json"
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps({"description": "A style", "sd version": "SDXL", "activation text": "mystyle, ネコ",
                               "preferred weight": 0.8, "negative text": "", "notes": "trained on 40 images"},
                              indent=4, ensure_ascii=False)
    assert list(json.loads(text)) == ["description", "sd version", "activation text", "preferred weight",
                                      "negative text", "notes"]
    with pytest.raises(UserError, match="never overwritten"):
        write_sidecar(lora, card)
    with pytest.raises(ValueError):
        sidecar(sd_version="SD3")


def test_preview_png(tmp_path):
    path = write_preview(tmp_path / "style.safetensors", Image.new("RGB", (64, 48), (200, 30, 30)))
    assert path == tmp_path / "style.preview.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (64, 48)
