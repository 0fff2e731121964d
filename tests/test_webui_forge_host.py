"""The WebUI host on Forge and Forge Neo with a Flux-family checkpoint loaded, against stand-ins for their modules
(names as in Forge dfdcbab6 and Neo: docs/webui.md), on the tiny Flux files in the layouts users have."""

from __future__ import annotations

import html
import shutil
import sys
import types
from pathlib import Path

import pytest

from lora_train.core.errors import UserError
from lora_train.webui.hosts.a1111_host import WebUIHost
from lora_train.webui.image_tab.controller import TabController
from lora_train.webui.worker.runner import JobRunner
from test_webui_controller import fake_checkpoint, form_inputs, images
from test_webui_host import webui  # noqa: F401 (the fixture: A1111's modules as stand-ins)

LAYOUTS = {"bare": "transformer", "prefixed": "prefixed", "all-in-one": "all_in_one"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny Flux.1-dev and Chroma files (fixtures/flux_files.py), once for the module."""
    from lora_train.fixtures.flux_files import build_tiny_flux_files

    return {family: build_tiny_flux_files(tmp_path_factory.mktemp(family), family) for family in ("flux-dev", "chroma")}


class Engine:
    """Forge's `ForgeDiffusionEngine` as the host sees it: `forge_objects`, the legacy flags all False, no device."""

    def __init__(self, info):
        self.sd_checkpoint_info = info
        self.forge_objects = types.SimpleNamespace(unet=object(), clip=object(), vae=object(), clipvision=None)
        self.is_sd1 = self.is_sdxl = False


class FakeInitialModel:  # Forge's placeholder before the first load
    cond_stage_model = None


def install(webui, monkeypatch, kind: str, checkpoint: Path, modules: list[Path]):
    """Forge (`kind` forge) or Neo (`neo`: no `sd_models.send_model_to_device`, no `modules.lowvram`) with
    `checkpoint` loaded and `modules` chosen in the "VAE / Text Encoder" selector."""
    calls = webui.calls
    sd_models = sys.modules["modules.sd_models"]
    info = types.SimpleNamespace(title=f"{checkpoint.name} [0123456789]", filename=str(checkpoint),
                                 shorthash="0123456789", hash="01234567")
    engine = Engine(info)
    model_data = types.SimpleNamespace(sd_model=engine, forge_hash="loaded", forge_loading_parameters=dict(
        checkpoint_info=info, additional_modules=[str(path) for path in modules], unet_storage_dtype=None))

    def forge_model_reload():
        calls.append("forge_model_reload")
        model_data.sd_model, model_data.forge_hash = Engine(info), "loaded"

    monkeypatch.setattr(sd_models, "model_data", model_data)
    monkeypatch.setattr(sd_models, "checkpoints_list", {info.title: info})
    monkeypatch.setattr(sd_models, "FakeInitialModel", FakeInitialModel, raising=False)
    monkeypatch.setattr(sd_models, "forge_model_reload", forge_model_reload, raising=False)
    if kind == "neo":
        monkeypatch.delattr(sd_models, "send_model_to_device")
        monkeypatch.delitem(sys.modules, "modules.lowvram", raising=False)
    monkeypatch.setattr(sys.modules["modules.shared"].opts, "forge_additional_modules",
                        [str(path) for path in modules], raising=False)
    memory = types.SimpleNamespace(unload_all_models=lambda: calls.append("unload_all_models"),
                                   soft_empty_cache=lambda force=False: calls.append("soft_empty_cache"))
    monkeypatch.setitem(sys.modules, "backend", types.ModuleType("backend"))
    monkeypatch.setitem(sys.modules, "backend.memory_management", memory)
    cuda = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"))
    monkeypatch.setitem(sys.modules, "modules.devices", cuda)
    return model_data


def forge_folders(root: Path, files, layout: str) -> dict[str, Path]:
    """The tiny model laid out as in a Forge install: the checkpoint in models/Stable-diffusion, the autoencoder
    in models/VAE, the text encoders in models/text_encoder."""
    places = {"checkpoint": (getattr(files, LAYOUTS[layout]), "Stable-diffusion"), "ae": (files.ae, "VAE"),
              "clip_l": (files.clip_l, "text_encoder"), "t5xxl": (files.t5xxl, "text_encoder")}
    laid = {}
    for name, (source, folder) in places.items():
        if source is not None:
            laid[name] = root / "models" / folder / source.name
            laid[name].parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, laid[name])
    return laid


def job_config(tmp_path: Path, checkpoint: Path, **fields):
    controller = TabController(WebUIHost(), JobRunner(), python_fallback="python")
    inputs, values = form_inputs(controller, images(tmp_path / "data", 2), **fields)
    inputs["base_model"] = f"{checkpoint.name} [0123456789]"
    return controller.job_config(inputs, values)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["forge", "neo"])
@pytest.mark.parametrize("layout", ["bare", "prefixed"])
def test_forge_with_flux_loaded_names_the_family_and_the_job_gets_the_selected_parts(  # noqa: F811
        webui, monkeypatch, tiny, kind, layout):
    laid = forge_folders(webui.tmp_path, tiny["flux-dev"], layout)
    install(webui, monkeypatch, kind, laid["checkpoint"], [laid["t5xxl"], laid["ae"], laid["clip_l"]])
    host = WebUIHost()
    current = host.current_model()
    assert (current.family, current.arch) == ("flux-dev", "Flux")
    assert current.describe().endswith("Flux (Flux.1-dev)")
    config = job_config(webui.tmp_path, laid["checkpoint"])
    assert (config.base_model, config.ae, config.clip_l, config.t5xxl) == (
        str(laid["checkpoint"]), str(laid["ae"]), str(laid["clip_l"]), str(laid["t5xxl"]))
    summary = TabController(host, JobRunner()).model_summary()
    assert "Flux.1-dev" in summary and "ae: ae.safetensors, clip_l: clip_l.safetensors, t5xxl: t5xxl.safetensors" in \
        summary


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["forge", "neo"])
def test_a_missing_t5_is_named_with_what_to_select_in_forges_selector(webui, monkeypatch, tiny, kind):  # noqa: F811
    laid = forge_folders(webui.tmp_path, tiny["flux-dev"], "bare")
    gguf = laid["ae"].parent.parent / "text_encoder" / "t5-v1_1-xxl-encoder-Q8_0.gguf"  # Forge reads it, we do not
    gguf.write_bytes(b"GGUF\3\0\0\0")
    install(webui, monkeypatch, kind, laid["checkpoint"], [laid["ae"], laid["clip_l"], gguf])
    expected = ('Select the T5-XXL text encoder (t5xxl_fp16.safetensors, in models/text_encoder) in Forge\'s "VAE / '
                'Text Encoder" selector')
    summary = TabController(WebUIHost(), JobRunner()).model_summary()
    assert html.escape(expected) in summary
    with pytest.raises(UserError, match="Select the T5-XXL text encoder") as raised:
        job_config(webui.tmp_path, laid["checkpoint"])
    assert "Advanced > t5xxl" in str(raised.value) and "Not read as a part: t5-v1_1-xxl-encoder-Q8_0.gguf" in \
        str(raised.value)
    assert "autoencoder" not in str(raised.value) and "CLIP-L" not in str(raised.value)  # those are selected
    typed = job_config(webui.tmp_path, laid["checkpoint"], t5xxl=str(tiny["flux-dev"].t5xxl))  # a typed file wins
    assert (typed.t5xxl, typed.ae) == (str(tiny["flux-dev"].t5xxl), str(laid["ae"]))


@pytest.mark.slow
def test_two_t5_files_selected_are_named_and_one_is_asked_for(webui, monkeypatch, tiny):  # noqa: F811
    laid = forge_folders(webui.tmp_path, tiny["flux-dev"], "bare")
    second = laid["t5xxl"].with_name("t5xxl_fp8_e4m3fn.safetensors")
    shutil.copyfile(laid["t5xxl"], second)
    install(webui, monkeypatch, "forge", laid["checkpoint"], [laid["ae"], laid["clip_l"], laid["t5xxl"], second])
    with pytest.raises(UserError, match=r"2 files for t5xxl \(t5xxl.safetensors, t5xxl_fp8_e4m3fn.safetensors\)"):
        job_config(webui.tmp_path, laid["checkpoint"])


@pytest.mark.slow
def test_an_all_in_one_checkpoint_needs_no_selection_and_chroma_no_clip_l(webui, monkeypatch, tiny):  # noqa: F811
    laid = forge_folders(webui.tmp_path, tiny["flux-dev"], "all-in-one")
    install(webui, monkeypatch, "neo", laid["checkpoint"], [])
    config = job_config(webui.tmp_path, laid["checkpoint"])
    assert (config.ae, config.clip_l, config.t5xxl) == (None, None, None)  # the trainer reads them from the file
    assert "ae: in the checkpoint, clip_l: in the checkpoint, t5xxl: in the checkpoint" in \
        TabController(WebUIHost(), JobRunner()).model_summary()

    chroma = forge_folders(webui.tmp_path / "chroma", tiny["chroma"], "bare")
    install(webui, monkeypatch, "forge", chroma["checkpoint"], [chroma["ae"], chroma["t5xxl"], laid["checkpoint"]])
    assert WebUIHost().current_model().describe().endswith("Flux (Chroma)")
    config = job_config(webui.tmp_path, chroma["checkpoint"])
    assert (config.ae, config.clip_l, config.t5xxl) == (str(chroma["ae"]), None, str(chroma["t5xxl"]))


@pytest.mark.parametrize("kind", ["forge", "neo"])
def test_the_model_is_dropped_through_forges_memory_management_and_loaded_again(webui, monkeypatch, kind):  # noqa: F811
    checkpoint = fake_checkpoint(webui.tmp_path / "models" / "Stable-diffusion" / "flux1-dev.safetensors",
                                 "double_blocks.0.img_attn.norm.key_norm.scale")
    model_data = install(webui, monkeypatch, kind, checkpoint, [])
    host = WebUIHost()
    note = host.release_model()
    assert note == ("flux1-dev.safetensors [0123456789] was unloaded from VRAM and RAM for training; it is loaded "
                    "again when the job ends.")
    assert webui.calls == ["unload_all_models", "soft_empty_cache"]  # not A1111's unload_model_weights
    assert isinstance(model_data.sd_model, FakeInitialModel) and model_data.forge_hash == ""
    assert host.current_model().title == "flux1-dev.safetensors [0123456789]"  # the tab still names it
    assert host.release_model() is None  # nothing loaded now: nothing more to free
    host.holders.add("llm")
    host.restore_model()
    assert webui.calls == ["unload_all_models", "soft_empty_cache"]
    host.holders.clear()
    assert host.restore_model() is None
    assert webui.calls == ["unload_all_models", "soft_empty_cache", "forge_model_reload"]
    assert isinstance(model_data.sd_model, Engine)
    host.restore_model()  # loaded once only
    assert webui.calls[-1] == "forge_model_reload" and webui.calls.count("forge_model_reload") == 1


def test_a_failed_reload_is_a_note_and_the_job_result_stands(webui, monkeypatch):  # noqa: F811
    checkpoint = fake_checkpoint(webui.tmp_path / "models" / "Stable-diffusion" / "flux1-dev.safetensors",
                                 "double_blocks.0.img_attn.norm.key_norm.scale")
    install(webui, monkeypatch, "neo", checkpoint, [])
    host = WebUIHost()
    host.release_model()

    def gone():
        raise ValueError("Failed to find available model...")

    monkeypatch.setattr(sys.modules["modules.sd_models"], "forge_model_reload", gone)
    assert host.restore_model() == ("Forge could not load its checkpoint again (Failed to find available model...); "
                                    "it tries at the next render.")


def test_neo_with_a_family_lora_train_does_not_train_says_so(webui, monkeypatch):  # noqa: F811
    checkpoint = fake_checkpoint(webui.tmp_path / "models" / "Stable-diffusion" / "z_image_turbo.safetensors",
                                 "model.diffusion_model.layers.0.adaLN_modulation.0.weight")
    install(webui, monkeypatch, "neo", checkpoint, [])
    host = WebUIHost()
    current = host.current_model()
    assert (current.family, current.arch) == ("z-image", None)
    assert current.describe().endswith("Z-Image (lora_train does not train it)")
    assert host.parts(checkpoint) is None


def test_a1111_has_no_selector_and_keeps_its_own_unload(webui):  # noqa: F811
    host = WebUIHost()
    assert host.parts(webui.tmp_path / "models" / "xl.safetensors") is None
    assert "moved out of VRAM" in host.release_model() and webui.calls == ["unload"]
