"""The WebUI host adapter against stand-ins for the WebUI's modules (names as in A1111 1.10 / Forge)."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import pytest

from lora_train.core.errors import UserError
from lora_train.webui.hosts.model_files import ModelInfo
from lora_train.webui.hosts.a1111_host import SETTINGS, WebUIHost, _on_main_thread, register_settings


class Options:
    def __init__(self):
        self.data_labels = {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        setattr(self, key, info.default)


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, section=None):
        self.default, self.label, self.component, self.component_args, self.section = (
            default, label, component, component_args, section)

    def info(self, text):
        self.comment = text
        return self


@pytest.fixture
def webui(tmp_path, monkeypatch):
    calls = []
    model = types.SimpleNamespace(is_sd1=False, is_sd2=False, is_sdxl=True, device=types.SimpleNamespace(type="cuda"),
                                  sd_checkpoint_info=types.SimpleNamespace(
        title="xl.safetensors [abc]", filename=str(tmp_path / "models" / "xl.safetensors"), shorthash="abc123",
        hash="0000"))
    cmd_opts = types.SimpleNamespace(lora_dir=str(tmp_path / "models" / "Lora"), listen=False, share=False,
                                     ngrok=None, server_name=None, gradio_auth=None, gradio_auth_path=None,
                                     ckpt_dir=None, vae_dir=None)
    stubs = {
        "modules": types.ModuleType("modules"),
        "modules.shared": types.SimpleNamespace(opts=Options(), cmd_opts=cmd_opts, OptionInfo=OptionInfo),
        "modules.paths_internal": types.SimpleNamespace(
            data_path=str(tmp_path), script_path=str(tmp_path / "webui"), models_path=str(tmp_path / "models"),
            default_output_dir=str(tmp_path / "outputs")),
        "modules.sd_models": types.SimpleNamespace(
            model_data=types.SimpleNamespace(sd_model=model),
            checkpoints_list={"a [1]": types.SimpleNamespace(title="a [1]", filename="/m/a.safetensors")},
            unload_model_weights=lambda: calls.append("unload"),
            send_model_to_device=lambda m: calls.append(("to_device", m is model))),
        "modules.sd_vae": types.SimpleNamespace(vae_dict={"v.pt": "/m/VAE/v.pt"}),
        "modules.call_queue": types.SimpleNamespace(queue_lock=threading.Lock()),
        "networks": types.SimpleNamespace(list_available_networks=lambda: calls.append("list_loras")),
    }
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("shared", "paths_internal", "sd_models", "sd_vae", "call_queue"):
        monkeypatch.setattr(stubs["modules"], name, stubs[f"modules.{name}"], raising=False)
    register_settings()
    return types.SimpleNamespace(calls=calls, opts=stubs["modules.shared"].opts, cmd_opts=cmd_opts,
                                 tmp_path=tmp_path)


def test_settings_and_model_come_from_the_webui(webui):
    host = WebUIHost()
    assert set(webui.opts.data_labels) == {setting.key for setting in SETTINGS}
    assert webui.opts.data_labels["lora_train_preset"].section == ("lora_train", "LoRA trainer")
    settings = host.settings()
    assert settings.lora_dir == webui.tmp_path / "models" / "Lora"
    assert settings.work_dir == webui.tmp_path / "outputs" / "lora_train"
    assert settings.llm_models_dir == webui.tmp_path / "models" / "LLM"
    assert settings.llm_lora_dir == webui.tmp_path / "models" / "LLM-LoRA"
    webui.opts.lora_train_lora_dir = str(webui.tmp_path / "mine")
    assert host.settings().lora_dir == webui.tmp_path / "mine"
    current = host.current_model()
    assert (current.title, current.arch, current.hash) == ("xl.safetensors [abc]", "SDXL", "abc123")
    assert [m.path for m in host.checkpoints()] == ["/m/a.safetensors"]
    assert [(v.title, v.path) for v in host.vaes()] == [("v.pt", "/m/VAE/v.pt")]


def test_forge_names_the_checkpoint_chosen_in_its_dropdown_before_it_loads_it(webui, monkeypatch):
    from test_webui_controller import fake_checkpoint

    chosen = fake_checkpoint(webui.tmp_path / "models" / "pony.safetensors", "conditioner.embedders.1.model.x")
    model_data = sys.modules["modules"].sd_models.model_data
    monkeypatch.setattr(model_data, "sd_model", types.SimpleNamespace(cond_stage_model=None), raising=False)
    monkeypatch.setattr(model_data, "forge_loading_parameters", {}, raising=False)
    assert WebUIHost().current_model() is None  # Forge at start: a placeholder model, nothing chosen yet
    model_data.forge_loading_parameters = {"checkpoint_info": types.SimpleNamespace(
        title="pony.safetensors [9f2]", filename=str(chosen), shorthash="9f2")}
    current = WebUIHost().current_model()
    assert (current.title, current.arch, current.hash) == ("pony.safetensors [9f2]", "SDXL", "9f2")


def test_model_leaves_vram_and_comes_back_and_the_lora_list_refreshes(webui):
    host = WebUIHost()
    assert "moved out of VRAM" in host.release_model()
    host.restore_model()
    host.refresh_loras()
    assert webui.calls == ["unload", ("to_device", True), "list_loras"]
    host.holders.add("llm")  # the LLM tab holds a language model: the checkpoint stays out after a job
    host.restore_model()
    assert webui.calls == ["unload", ("to_device", True), "list_loras"]


def test_nothing_is_said_about_vram_on_a_cpu_only_webui(webui, monkeypatch):
    model = sys.modules["modules"].sd_models.model_data.sd_model
    monkeypatch.setattr(model, "device", types.SimpleNamespace(type="cpu"))  # --use-cpu all
    assert WebUIHost().release_model() is None
    monkeypatch.delattr(model, "device")  # Forge's model has no device: the WebUI's device tells
    monkeypatch.setitem(sys.modules, "modules.devices", types.SimpleNamespace(device=types.SimpleNamespace(type="cpu")))
    assert WebUIHost().release_model() is None
    assert webui.calls == []
    sys.modules["modules.devices"].device.type = "cuda"
    assert "moved out of VRAM" in WebUIHost().release_model() and webui.calls == ["unload"]


def test_the_header_names_the_checkpoint_hash_once(webui):
    assert WebUIHost().current_model().describe() == "xl.safetensors [abc] SDXL"
    assert ModelInfo("tiny_sd1.safetensors [614b0e8cdb]", "/m/t", "SD1", "614b0e8cdb").describe() == \
        "tiny_sd1.safetensors [614b0e8cdb] SD1"
    assert ModelInfo("plain.safetensors", "/m/p", None, "614b0e8cdb").describe() == \
        "plain.safetensors [614b0e8cdb] type unknown"


def test_test_renders_show_the_webuis_progress_and_stop_it(webui, monkeypatch):
    state = types.SimpleNamespace(sampling_step=4, sampling_steps=10, interrupted=False)
    state.interrupt = lambda: setattr(state, "interrupted", True)
    monkeypatch.setattr(sys.modules["modules.shared"], "state", state, raising=False)
    host = WebUIHost()
    assert host.render_progress() == (4, 10)
    host.stop_render()
    assert state.interrupted
    state.sampling_steps = 0
    assert host.render_progress() is None


def test_nothing_leaves_vram_while_forge_has_only_its_placeholder_model(webui, monkeypatch):
    model_data = sys.modules["modules"].sd_models.model_data
    monkeypatch.setattr(model_data, "sd_model", types.SimpleNamespace(cond_stage_model=None, chunk_length=75))
    assert WebUIHost().release_model() is None
    assert webui.calls == []


def test_forge_main_thread_work_returns_its_result_and_raises_its_error_in_the_caller(webui, monkeypatch):
    def run_and_wait_result(fn):  # like Forge's: an exception is printed and swallowed, None comes back
        try:
            return fn()
        except Exception:
            return None

    forge = types.ModuleType("modules_forge")
    forge.main_thread = types.SimpleNamespace(run_and_wait_result=run_and_wait_result)
    monkeypatch.setitem(sys.modules, "modules_forge", forge)
    def unknown_model():
        raise ValueError("Failed to recognize model type!")

    assert _on_main_thread(lambda: "image") == "image"
    with pytest.raises(ValueError, match="Failed to recognize model type"):
        _on_main_thread(unknown_model)


def test_paths_are_confined_when_listening_without_a_password(webui):
    host = WebUIHost()
    outside = "/etc"
    assert host.path_policy().resolve(outside, "Dataset folder") == Path(outside)
    webui.cmd_opts.listen = True
    with pytest.raises(UserError, match="Dataset roots"):
        host.path_policy().resolve(outside, "Dataset folder")
    assert host.path_policy().resolve(str(webui.tmp_path / "models" / "x"), "Base model")
    webui.opts.lora_train_dataset_roots = "/etc\n/srv"
    assert host.path_policy().resolve(outside, "Dataset folder") == Path(outside)
    webui.opts.lora_train_dataset_roots = ""
    webui.cmd_opts.gradio_auth = "user:secret"
    assert host.path_policy().resolve(outside, "Dataset folder") == Path(outside)


def test_renders_name_their_scheduler_so_the_webui_corrects_nothing(webui, monkeypatch):
    """A stand-in of A1111 1.10's txt2img: `process_images` runs the WebUI's sampler / scheduler check, which
    logs "Sampler Scheduler autocorrection" for a render without a scheduler it knows."""
    import dataclasses
    import logging

    @dataclasses.dataclass
    class Txt2Img:  # the fields of A1111's StableDiffusionProcessingTxt2Img that the host passes
        sd_model: object = None
        prompt: str = ""
        negative_prompt: str = ""
        seed: int = -1
        steps: int = 20
        width: int = 512
        height: int = 512
        cfg_scale: float = 7.0
        sampler_name: str | None = None
        scheduler: str | None = None
        batch_size: int = 1
        n_iter: int = 1
        do_not_save_samples: bool = False
        do_not_save_grid: bool = False

        def close(self):
            pass

    corrections = []

    def process_images(p):
        schedulers = {"Automatic", "Uniform", "Karras", "Exponential"}  # labels, as the WebUI checks them
        if p.scheduler not in schedulers:
            corrections.append(f'Sampler Scheduler autocorrection: "{p.sampler_name}" -> "{p.sampler_name}", '
                               f'"{p.scheduler}" -> "Automatic"')
            logging.warning(corrections[-1])
        return types.SimpleNamespace(images=[f"image of {p.prompt}"])

    state = types.SimpleNamespace(begin=lambda job: None, end=lambda: None)
    monkeypatch.setitem(sys.modules, "modules.processing", types.SimpleNamespace(
        StableDiffusionProcessingTxt2Img=Txt2Img, process_images=process_images))
    monkeypatch.setattr(sys.modules["modules"], "processing", sys.modules["modules.processing"], raising=False)
    monkeypatch.setattr(sys.modules["modules.shared"], "state", state, raising=False)
    monkeypatch.setattr(sys.modules["modules.shared"], "sd_model", object(), raising=False)
    assert WebUIHost().render("zq <lora:x:0.8>", "", 7, 4, 64, 64) == "image of zq <lora:x:0.8>"
    assert corrections == []


def test_ui_refuses_options_that_cannot_work_before_serving(tmp_path, capsys):
    from lora_train.cli import main

    twice = tmp_path / "defaults.yaml"
    twice.write_text("lora_rank: 8\nlora_rank: 16\n")
    cases = [(["--port", "99999"], "--port 99999: give a port from 1 to 65535"),
             (["--models-dir", str(tmp_path / "none")], "is not a folder: give the folder of your checkpoints"),
             (["--python", str(tmp_path / "python9")], "is not a program here"),
             (["--defaults-file", str(tmp_path / "absent.yaml")], "absent.yaml does not exist"),
             (["--defaults-file", str(twice)], "sets 'lora_rank' twice (lines 1 and 2)")]
    for argv, message in cases:
        assert main(["ui", *argv, "--lora-dir", str(tmp_path / "loras")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "loras").exists()
