"""The WebUI (A1111 1.10 / Forge / Forge Neo) as the tab's host: its loaded checkpoint, folders, settings and GPU.

Imports WebUI modules only inside the methods, so this file can be imported (and tested with
stand-in modules) without a WebUI. Names used, all present in A1111 1.10, Forge and Neo:
`sd_models.model_data.sd_model` (read without triggering a load) and its `sd_checkpoint_info`;
`sd_models.checkpoints_list`; `sd_vae.vae_dict`; `shared.cmd_opts.lora_dir`; the built-in Lora
extension's `networks.list_available_networks()`; `processing.process_images`. The family comes from
the checkpoint's header (Forge's Flux engine has no `is_flux`), else from A1111's `is_sd1/is_sd2/is_sdxl`.
On A1111 the model leaves VRAM by `sd_models.unload_model_weights` and comes back by
`send_model_to_device`; on Forge and Neo (`forge_backend.py`) it is dropped and reloaded, and a DiT
family's parts come from the "VAE / Text Encoder" selector. Renders name their scheduler ("Automatic":
the sampler's own), as the WebUI's txt2img does; without one the WebUI logs a "Sampler Scheduler
autocorrection" line for each render.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...families import trained_families
from ...families.interface import Family
from ..image_tab.presets import CHOICES as PRESET_CHOICES, DEFAULT_PRESET
from .forge_backend import forge_memory, selected_modules, unload
from .host import TabSettings
from .model_files import ModelInfo, sniff_family
from .part_selection import PartSelection, select_parts
from .paths import PathPolicy, network_exposed, split_roots

SECTION = ("lora_train", "LoRA trainer")


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    label: str
    info: str
    choices: tuple[str, ...] | None = None


SETTINGS = (
    Setting("lora_train_lora_dir", "", "LoRA output folder",
            "where finished LoRAs go; empty: the WebUI's Lora folder (--lora-dir)"),
    Setting("lora_train_work_dir", "", "Training work folder",
            "samples, logs and resumable checkpoints of each job; empty: outputs/lora_train"),
    Setting("lora_train_preset", DEFAULT_PRESET, "Default preset", "the hyperparameters the tab starts with",
            tuple(PRESET_CHOICES)),
    Setting("lora_train_defaults_file", "", "Default settings file",
            "a YAML config whose values fill the tab at start (after the preset)"),
    Setting("lora_train_worker_python", "", "Worker interpreter",
            "the Python that runs training; empty: the venv install.py made (LORA_TRAIN_PYTHON wins)"),
    Setting("lora_train_llm_models_dir", "", "LLM base models folder",
            "the LLM LoRA tab lists the model folders and .gguf files in it; empty: models/LLM"),
    Setting("lora_train_llm_lora_dir", "", "LLM adapter folder",
            "where the LLM LoRA tab's adapters go (not the Lora folder); empty: models/LLM-LoRA"),
    Setting("lora_train_dataset_roots", "", "Dataset roots",
            "folders (one per line) the tab may read when the WebUI is reachable from the network without "
            "a password"),
    Setting("lora_train_captioners_dir", "", "Captioning models folder",
            "captioning models, and where hub models are downloaded; empty: models/lora_train/captioners"),
)


def register_settings() -> None:
    """Add the settings section (called from `on_ui_settings`)."""
    import gradio as gr
    from modules import shared

    for setting in SETTINGS:
        component, args = (gr.Dropdown, {"choices": list(setting.choices)}) if setting.choices else (None, None)
        if setting.key == "lora_train_dataset_roots":
            component, args = gr.Textbox, {"lines": 3}
        shared.opts.add_option(setting.key, shared.OptionInfo(setting.default, setting.label, component, args,
                                                              section=SECTION).info(setting.info))


def _on_main_thread(fn: Callable[[], Any]) -> Any:
    """Forge runs model work on its main thread; A1111 runs it on the caller's, under the queue lock."""
    from modules.call_queue import queue_lock

    try:
        from modules_forge import main_thread
    except ImportError:
        main_thread = None
    with queue_lock:
        return _forge_call(main_thread, fn) if main_thread else fn()


def _forge_call(main_thread: Any, fn: Callable[[], Any]) -> Any:
    """`fn()` on Forge's main thread, whose runner prints an exception and returns None: raise it here."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = fn()
        except Exception as exc:
            outcome["error"] = exc

    main_thread.run_and_wait_result(call)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def _device_type(model: Any) -> str | None:
    """Where the WebUI's model is: `cuda`, `cpu`, ... from the model (A1111) or the WebUI's device (Forge);
    None when neither says."""
    device = getattr(model, "device", None) or getattr(sys.modules.get("modules.devices"), "device", None)
    kind = getattr(device, "type", None)
    return str(kind) if kind else None


def _model_info(info: Any, model: Any, hash: str | None) -> ModelInfo:
    """A checkpoint the WebUI has (`model`: its loaded model, None when only chosen) with its family: from the
    file's header, else from A1111's flags named after the family ids (is_sd1, is_sd2, is_sdxl)."""
    found = sniff_family(Path(info.filename))
    if found is None and model is not None:
        found = next((row for row in trained_families() if getattr(model, f"is_{row.id}", False)), None)
    label = found.names.label if isinstance(found, Family) else None
    return ModelInfo(info.title, info.filename, label, hash, found.id if found is not None else None)


class WebUIHost:
    name = "WebUI"
    can_render = True
    inserts_prompts = True

    def __init__(self) -> None:
        self.holders: set[str] = set()  # other users of the GPU (the LLM tab's model): the checkpoint stays out
        self.dropped = False  # Forge's model was unloaded by release_model and is loaded again by restore_model

    def _opt(self, key: str) -> Any:
        from modules import shared

        default = next(setting.default for setting in SETTINGS if setting.key == key)
        return getattr(shared.opts, key, default) if shared.opts is not None else default

    def settings(self) -> TabSettings:
        from modules import paths_internal, shared

        lora_dir = self._opt("lora_train_lora_dir") or getattr(shared.cmd_opts, "lora_dir", None) or \
            os.path.join(paths_internal.models_path, "Lora")
        work_dir = self._opt("lora_train_work_dir") or os.path.join(paths_internal.default_output_dir, "lora_train")
        models = Path(paths_internal.models_path)
        return TabSettings(Path(lora_dir), Path(work_dir), self._opt("lora_train_preset") or DEFAULT_PRESET,
                           self._opt("lora_train_defaults_file"), self._opt("lora_train_worker_python"),
                           split_roots(self._opt("lora_train_dataset_roots")),
                           Path(self._opt("lora_train_llm_models_dir") or models / "LLM"),
                           Path(self._opt("lora_train_llm_lora_dir") or models / "LLM-LoRA"),
                           Path(self._opt("lora_train_captioners_dir") or models / "lora_train" / "captioners"))

    def path_policy(self) -> PathPolicy:
        from modules import paths_internal, shared

        opts = shared.cmd_opts
        exposed = network_exposed(bool(getattr(opts, "listen", False)),
                                  bool(getattr(opts, "share", False) or getattr(opts, "ngrok", None)),
                                  getattr(opts, "server_name", None),
                                  bool(getattr(opts, "gradio_auth", None) or getattr(opts, "gradio_auth_path", None)))
        settings = self.settings()
        roots = [paths_internal.data_path, paths_internal.script_path, paths_internal.models_path,
                 getattr(opts, "ckpt_dir", None), getattr(opts, "vae_dir", None), settings.lora_dir,
                 settings.work_dir, settings.llm_models_dir, settings.llm_lora_dir, *settings.dataset_roots]
        return PathPolicy(exposed, [root for root in roots if root],
                          "Add the folder under Settings > LoRA trainer > Dataset roots, or start the WebUI with "
                          "--gradio-auth.")

    def current_model(self) -> ModelInfo | None:
        from modules import sd_models

        model = getattr(sd_models.model_data, "sd_model", None)
        info = getattr(model, "sd_checkpoint_info", None)
        # Forge loads lazily: the checkpoint chosen in its dropdown is loaded at the next render.
        selected = (getattr(sd_models.model_data, "forge_loading_parameters", None) or {}).get("checkpoint_info")
        if selected is not None and selected is not info:
            return _model_info(selected, None, getattr(selected, "shorthash", None))
        if info is None:
            return None
        return _model_info(info, model, getattr(info, "shorthash", None) or info.hash)

    def parts(self, base_model: Path) -> PartSelection | None:
        """Forge's / Neo's "VAE / Text Encoder" selection sorted into the parts of `base_model`'s family; None on
        A1111 (no selector) and for families without separate parts."""
        if forge_memory() is None:
            return None
        from modules import sd_models, shared

        return select_parts(base_model, selected_modules(sd_models.model_data, shared.opts))

    def checkpoints(self) -> list[ModelInfo]:
        from modules import sd_models

        return [ModelInfo(info.title, info.filename) for info in sd_models.checkpoints_list.values()]

    def vaes(self) -> list[ModelInfo]:
        from modules import sd_vae

        return [ModelInfo(name, path) for name, path in sorted(sd_vae.vae_dict.items())]

    def release_model(self) -> str | None:
        from modules import sd_models

        model = getattr(sd_models.model_data, "sd_model", None)
        info = getattr(model, "sd_checkpoint_info", None)
        if info is None:  # none, or Forge's placeholder before the first load
            return None
        device = _device_type(model)
        if device == "cpu":  # a CPU-only WebUI (--use-cpu all): there is no VRAM to free
            return None
        memory = forge_memory()
        if memory is not None:
            _on_main_thread(lambda: unload(sd_models, memory))
            self.dropped = True
            return f"{info.title} was unloaded from VRAM and RAM for training; it is loaded again when the job ends."
        _on_main_thread(lambda: sd_models.unload_model_weights())
        return ("The WebUI's model was moved out of VRAM for training; it comes back when the job ends." if device
                else None)

    def restore_model(self) -> str | None:
        from modules import sd_models

        if self.holders:
            return None
        if forge_memory() is not None:  # Forge and Neo: what release_model dropped is loaded again, once
            return self._reload_forge_model(sd_models) if self.dropped else None
        model = getattr(sd_models.model_data, "sd_model", None)
        if model is None or getattr(model, "sd_checkpoint_info", None) is None:
            return None
        _on_main_thread(lambda: sd_models.send_model_to_device(model))
        return None

    def _reload_forge_model(self, sd_models: Any) -> str | None:
        self.dropped = False
        try:
            _on_main_thread(sd_models.forge_model_reload)
        except Exception as exc:  # the WebUI's own loader: whatever it raises, the job's result stands
            return f"Forge could not load its checkpoint again ({exc}); it tries at the next render."
        return None

    def refresh_loras(self) -> None:
        networks = sys.modules.get("networks")  # the built-in Lora extension's module
        if networks is not None and hasattr(networks, "list_available_networks"):
            networks.list_available_networks()

    def render(self, prompt: str, negative: str, seed: int, steps: int, width: int, height: int):
        from modules import processing, shared

        def generate():
            p = processing.StableDiffusionProcessingTxt2Img(
                sd_model=shared.sd_model, prompt=prompt, negative_prompt=negative, seed=seed, steps=steps,
                width=width, height=height, cfg_scale=7.0, sampler_name="Euler a", scheduler="Automatic",
                batch_size=1, n_iter=1, do_not_save_samples=True, do_not_save_grid=True)
            shared.state.begin(job="lora_train test")
            try:
                return processing.process_images(p).images[0]
            finally:
                p.close()
                shared.state.end()

        return _on_main_thread(generate)

    def render_progress(self) -> tuple[int, int] | None:
        from modules import shared

        state = shared.state
        return (state.sampling_step, state.sampling_steps) if getattr(state, "sampling_steps", 0) else None

    def stop_render(self) -> None:
        from modules import shared

        shared.state.interrupt()
