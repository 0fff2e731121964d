"""The tab's actions without a browser: form -> job config, path confinement, presets, datasets, YAML."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lora_train.config.load import read_yaml
from lora_train.core.errors import UserError
from lora_train.webui import form
from lora_train.webui.controller import AUTOMATIC_VAE, TabController
from lora_train.webui.host import StandaloneHost, TabSettings
from lora_train.webui.paths import PathPolicy, network_exposed, safe_name
from lora_train.webui.presets import preset_form_values
from lora_train.webui.runner import JobRunner


def fake_checkpoint(path: Path, marker: str = "cond_stage_model.transformer.text_model.x") -> Path:
    """A .safetensors file whose header names one tensor (enough for the type sniffing)."""
    header = json.dumps({marker: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return path


def images(folder: Path, count: int, size: int = 64, captions: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new("RGB", (size, size), (40 * index % 255, 90, 160)).save(folder / f"{index:02d}.png")
        if captions:
            (folder / f"{index:02d}.txt").write_text(f"shape {index}")
    return folder


@pytest.fixture
def setup(tmp_path):
    models = tmp_path / "models"
    fake_checkpoint(models / "Stable-diffusion" / "sd1.safetensors")
    fake_checkpoint(models / "Stable-diffusion" / "xl.safetensors", "conditioner.embedders.1.model.x")
    settings = TabSettings(tmp_path / "loras", tmp_path / "runs")
    policy = PathPolicy(False, [models, tmp_path / "loras", tmp_path / "runs"])
    host = StandaloneHost(models, settings, policy)
    controller = TabController(host, JobRunner(), python_fallback="python")
    data = images(tmp_path / "data", 3)
    return controller, tmp_path, data


def form_inputs(controller: TabController, data: Path, **changes) -> tuple[dict, list]:
    inputs = dict(base_model="sd1.safetensors", vae=AUTOMATIC_VAE, train_data_dir=str(data), trigger_word="zq",
                  output_name="my lora")
    inputs.update({k: v for k, v in changes.items() if k in inputs})
    values = controller.initial_values()
    values.update({k: v for k, v in changes.items() if k not in inputs})
    return inputs, [form.to_widget(spec, values[spec.name]) for spec in controller.specs]


def test_the_form_becomes_the_config_the_cli_runs(setup):
    controller, tmp_path, data = setup
    inputs, fields = form_inputs(controller, data, output_name="../../evil/name", lora_rank=8,
                                 sample_prompts=["zq, a red circle", "zq, a square"])
    config = controller.job_config(inputs, fields)
    assert config.output_name == "name"
    assert Path(config.output_dir) == tmp_path / "runs" / "name"
    assert Path(config.lora_output_dir) == tmp_path / "loras"
    assert config.base_model.endswith("sd1.safetensors") and config.vae is None
    assert config.lora_rank == 8 and config.sample_prompts == ["zq, a red circle", "zq, a square"]
    assert config.target_modules is None and config.task_type == "image"
    message, text = controller.save_config(str(tmp_path / "runs" / "name.yaml"), inputs, fields)
    saved = read_yaml(tmp_path / "runs" / "name.yaml")
    assert "python -m lora_train train --config" in message and saved == yaml.safe_load(text)
    assert saved["lora_rank"] == 8 and "seed" not in saved  # only the keys that differ from the defaults
    assert controller.read_config(str(tmp_path / "runs" / "name.yaml"))["trigger_word"] == "zq"


def test_bad_values_get_the_cli_messages(setup):
    controller, tmp_path, data = setup
    inputs, fields = form_inputs(controller, data, learning_rate=-1.0)
    with pytest.raises(UserError, match="'learning_rate' is -1.0, out of range"):
        controller.job_config(inputs, fields)
    inputs, fields = form_inputs(controller, data, optimizer_args="{betas: [0.9")
    with pytest.raises(UserError, match="'optimizer_args' must be a mapping"):
        controller.job_config(inputs, fields)
    bad = tmp_path / "runs" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("lora_rnak: 8\n")
    with pytest.raises(UserError, match="Unknown key 'lora_rnak'.*Did you mean 'lora_rank'"):
        controller.read_config(str(bad))
    inputs, fields = form_inputs(controller, data)
    with pytest.raises(UserError, match="Nothing to resume"):
        controller.start(inputs, fields, resume=True)


def test_dataset_review_uses_the_trainers_messages(setup):
    controller, tmp_path, data = setup
    images(data, 1, size=32, captions=False)  # 00.png replaced by a small image without caption
    (data / "00.txt").unlink()
    inputs, fields = form_inputs(controller, data, resolution=64, enable_bucket=False)
    note, gallery = controller.scan(inputs, fields)
    assert "3 images (2 with a caption)" in note
    assert "no caption file" in note and "smaller than the training size" in note
    assert len(gallery) == 3 and gallery[1][1] == "01.png: shape 1"
    empty = tmp_path / "runs" / "empty"
    empty.mkdir(parents=True)
    inputs, fields = form_inputs(controller, empty)
    with pytest.raises(UserError, match="No images in"):
        controller.scan(inputs, fields)


def test_presets_replace_each_other_and_follow_the_model_type(setup):
    controller, _, _ = setup
    low = preset_form_values("Low VRAM", "SD1")
    assert low["cache_text_encoder_outputs"] is True and low["batch_size"] == 1
    character = controller.preset("Character", "sd1.safetensors")
    assert character["gradient_checkpointing"] is False and character["train_text_encoder"] is True
    assert character["batch_size"] == 2 and character["resolution"] == 512
    assert controller.preset("Style", "xl.safetensors")["resolution"] == 1024


def test_paths_are_confined_only_when_exposed(tmp_path):
    inside = tmp_path / "allowed"
    (inside / "data").mkdir(parents=True)
    (inside / "escape").symlink_to(tmp_path)
    policy = PathPolicy(True, [inside], "Add a root.")
    assert policy.resolve(str(inside / "data"), "Dataset folder") == inside / "data"
    with pytest.raises(UserError, match="outside the folders this server may use.*Add a root"):
        policy.resolve(str(tmp_path / "elsewhere"), "Dataset folder")
    with pytest.raises(UserError, match="Dataset folder"):
        policy.resolve(str(inside / "escape" / "elsewhere"), "Dataset folder")
    with pytest.raises(UserError, match="outside"):
        policy.resolve(str(inside / ".." / "x"), "Config file")
    assert PathPolicy(False, [inside]).resolve("/etc", "x") == Path("/etc")
    assert network_exposed(True, False, None, False) and network_exposed(False, True, None, False)
    assert network_exposed(False, False, "0.0.0.0", False)
    assert not network_exposed(True, False, None, True) and not network_exposed(False, False, "127.0.0.1", False)
    assert [safe_name(n) for n in ("../x", "a/b\\c", "..", "ok name-1.2", "a:b*c")] == [
        "x", "c", "my_lora", "ok name-1.2", "a_b_c"]


def test_the_tab_follows_the_checkpoint_the_webui_loads_unless_the_user_chose_another(setup):
    from lora_train.webui.checkpoints import ModelInfo
    from lora_train.webui.tab import TabView

    controller, _, _ = setup
    loaded: list[ModelInfo | None] = [None]
    controller.host.current_model = lambda: loaded[0]
    view = TabView(controller)
    seen = {"loaded": None, "followed": "sd1.safetensors"}  # built before the WebUI had loaded its model
    assert view.follow_model("sd1.safetensors", seen)[2] is seen  # nothing changed: nothing to update

    loaded[0] = ModelInfo("xl.safetensors [abc]", "/m/xl.safetensors", "SDXL", "abc")
    note, choice, seen = view.follow_model("sd1.safetensors", seen)
    assert "xl.safetensors [abc]" in note and "SDXL" in note
    assert choice["value"] == "xl.safetensors [abc]" and seen["followed"] == "xl.safetensors [abc]"

    loaded[0] = ModelInfo("other.safetensors", "/m/other.safetensors", "SD1")
    note, choice, seen = view.follow_model("my pick.safetensors", seen)  # the user chose: keep the choice
    assert "other.safetensors" in note and "value" not in choice and seen["followed"] == "xl.safetensors [abc]"
