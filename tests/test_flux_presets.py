"""The Flux memory presets (flux_24gb, flux_16gb, flux_12gb, flux_8gb): each loads, validates and trains a step on a
tiny Flux model; the tab offers them for a Flux model only, and a Flux preset is refused for a Stable Diffusion
base (and the reverse)."""

from __future__ import annotations

import pytest

from flux_support import deep_flux_dev
from lora_train.config import load_config
from lora_train.config.presets import PRESETS, preset_values
from lora_train.core.errors import UserError
from lora_train.families import family, trained_families
from lora_train.webui.image_tab.presets import preset_choices, preset_form_values
from train_support import copy_dataset, train

FLUX_PRESETS = ("flux_24gb", "flux_16gb", "flux_12gb", "flux_8gb")
TINY = {"resolution": 64, "t5xxl_max_token_length": 16, "sample_steps": 0, "max_train_steps": 1}


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def test_every_family_offers_presets_that_exist():
    for row in trained_families():
        assert row.presets and set(row.presets) <= set(PRESETS), row.id
    assert family("flux-dev").presets == family("chroma").presets == FLUX_PRESETS
    assert "flux_24gb" not in family("sdxl").presets


def test_the_tab_lists_the_model_family_s_presets():
    assert preset_choices("Flux") == ["Flux 24 GB", "Flux 16 GB", "Flux 12 GB", "Flux 8 GB"]
    assert preset_choices("SDXL") == preset_choices(None) == ["Character", "Style", "Concept", "Low VRAM",
                                                              "Auto (from the dataset)"]  # Auto: sourced rules
    values = preset_form_values("Flux 12 GB", "Flux")
    assert values["blocks_to_swap"] == 16 and values["resolution"] == 1024 and values["fp8_base"] is True
    assert preset_form_values("Character", "SD1")["blocks_to_swap"] == 0  # switching back resets the Flux keys


def test_a_preset_of_the_other_engine_is_refused():
    with pytest.raises(UserError, match=r"The flux_24gb preset is not for SD 1.x models: choose one of character"):
        preset_form_values("Flux 24 GB", "SD1")
    with pytest.raises(UserError, match=r"The low_vram preset is not for Flux.1-dev models: choose one of flux_24gb"):
        preset_values("low_vram", family("flux-dev"))


@pytest.mark.slow
@pytest.mark.parametrize("name", FLUX_PRESETS)
def test_each_flux_preset_trains_a_step(tiny_flux_files, tmp_path, name):
    model = deep_flux_dev(tiny_flux_files("flux-dev"), tmp_path / "model")
    values = preset_values(name, family("flux-dev"))
    # the tiny model: 4 double and 6 single blocks take at most 4 (kohya's count); the preset's other keys as they are
    size = {**TINY, "blocks_to_swap": min(values["blocks_to_swap"], 4)}
    config = load_config(overrides={**values, **size, "base_model": str(model), "train_data_dir": str(tmp_path)})
    assert config.fp8_base and config.gradient_checkpointing and config.optimizer == values["optimizer"]
    path, events = train(model, tmp_path / "out", train_data_dir=str(copy_dataset(tmp_path)), **{**values, **size})
    steps = [event for event in events if event["type"] == "step"]
    assert path.is_file() and len(steps) == 1 and steps[0]["loss"] > 0
    assert any("Block swap" in e.get("message", "") for e in events) == bool(size["blocks_to_swap"])
