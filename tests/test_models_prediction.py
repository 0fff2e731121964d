"""Epsilon or v: the setting, the yaml, the metadata, the v_pred marker, then (SD2 only) the WebUI's test."""

import shutil
from types import SimpleNamespace

import pytest
import torch

from lora_train.fixtures.real_size import real_size_checkpoint
from lora_train.models.load import load_base_model
from lora_train.models import single_file
from lora_train.models.ldm_config import find_ldm_config
from lora_train.models.prediction import declared_v_prediction, looks_like_v_prediction


@pytest.mark.parametrize("metadata, keys, expected", [
    ({}, {}, None),
    ({"modelspec.prediction_type": "v"}, {}, True),
    ({"modelspec.prediction_type": "epsilon"}, {"v_pred": 0}, False),
    ({"modelspec.architecture": "stable-diffusion-v2-768-v"}, {}, True),
    ({"modelspec.architecture": "stable-diffusion-v2-512"}, {}, None),
    ({}, {"v_pred": 0}, True),  # NoobAI-XL v-pred and other v SDXL models carry this marker
])
def test_metadata_and_markers(metadata, keys, expected):
    assert declared_v_prediction("auto", None, metadata, keys) is expected


def test_setting_beats_the_yaml_which_beats_the_file(tiny_checkpoints):
    ldm = find_ldm_config(tiny_checkpoints("sd2-v").single_file)
    assert declared_v_prediction("auto", ldm, {"modelspec.prediction_type": "epsilon"}, {}) is True
    assert declared_v_prediction("epsilon", ldm, {}, {}) is False
    assert declared_v_prediction("v_prediction", None, {}, {}) is True


def test_sd2_v_file_and_the_epsilon_override(tiny_sd2v_file):
    base = load_base_model(tiny_sd2v_file, prediction_type="epsilon")
    assert not base.v_prediction and base.base_model_version == "sd_v2"
    assert base.noise_scheduler.config.prediction_type == "epsilon"


def test_sdxl_yaml_with_v_scaling_means_v(copy_tiny_checkpoint):
    def v_scaling(config):
        scaling = config["model"]["params"]["denoiser_config"]["params"]["scaling_config"]
        scaling["target"] = scaling["target"].replace("EpsScaling", "VScaling")

    base = load_base_model(copy_tiny_checkpoint("sdxl", edit_yaml=v_scaling))
    assert base.v_prediction and base.base_model_version == "sdxl_base_v1-0"
    assert base.noise_scheduler.config.prediction_type == "v_prediction"


def test_relative_text_encoder_folder_in_the_yaml_is_found_beside_it(copy_tiny_checkpoint, tiny_checkpoints):
    def relative(config):
        config["model"]["params"]["cond_stage_config"]["params"]["version"] = "te"

    target = copy_tiny_checkpoint("sd2-v", edit_yaml=relative)
    shutil.copytree(tiny_checkpoints("sd2-v").text_encoders[0], target.parent / "te")
    assert find_ldm_config(target).text_encoder_folders() == [target.parent / "te"]
    assert load_base_model(target).v_prediction


class ConstantShiftUNet(torch.nn.Module):
    """Stands in for a UNet whose output is its input plus `shift`."""

    def __init__(self, shift: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.shift = shift
        self.config = SimpleNamespace(in_channels=4, cross_attention_dim=8)

    def forward(self, latent, timestep, encoder_hidden_states):
        assert timestep.tolist() == [999] and encoder_hidden_states.shape == (1, 2, 8)
        return SimpleNamespace(sample=latent + self.shift)


def test_webui_test_for_sd2_v():
    assert looks_like_v_prediction(ConstantShiftUNet(-2.0))
    assert not looks_like_v_prediction(ConstantShiftUNet(0.0))


def test_webui_test_decides_only_for_sd2_when_nothing_is_declared(monkeypatch):
    calls = []
    monkeypatch.setattr(single_file, "looks_like_v_prediction", lambda unet: calls.append(unet) or True)
    base = single_file.load_checkpoint(real_size_checkpoint("sd2"), None, "auto", torch.float16)
    assert base.v_prediction and len(calls) == 1
    assert base.base_model_version == "sd_v2_v" and base.unet.config.sample_size == 96  # 768 px
    declared = real_size_checkpoint("sd2", metadata={"modelspec.prediction_type": "epsilon"})
    assert not single_file.load_checkpoint(declared, None, "auto", torch.float16).v_prediction
    assert not single_file.load_checkpoint(real_size_checkpoint("sd1"), None, "auto", torch.float16).v_prediction
    assert len(calls) == 1
