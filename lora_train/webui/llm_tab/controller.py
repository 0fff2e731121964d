"""What the LLM LoRA tab's buttons do: pick and load a base model in the worker, preview the data,
train (a `text-generation` job through the shared runner), publish the adapter, test it.

The model lives in the worker process (`worker/model_worker.py`). While it is loaded the host's own model
(the WebUI's checkpoint) is out of VRAM; during a training job the worker's model moves to the CPU.
Adapters are trained in the work folder and copied, when the job ends, into the LLM adapter folder
(a setting; never the image Lora folder), under a new name when the name is taken. A reused name gets its
own work folder (`name_v2`, core/naming.run_name) as in the image tab.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config.load import build_config
from ...core.atomic import rewrite_folder, write_new_folder
from ...core.errors import UserError
from ...core.naming import free_folder_path, run_name
from ...core.ownership import saved_by
from ...core.resume_folders import require_resume_folder
from ...text.schema import TextConfig, check_text_config
from ..hosts.host import Host
from ..hosts.paths import safe_name
from ..kit import form, markup
from ..worker.launch import resolve_worker_python
from ..worker.model_worker import ModelWorker
from ..worker.runner import Followup, JobRunner, JobSpec, JobState
from . import render
from .presets import preset_values

MANAGED_KEYS = ("task_type", "base_model", "metadata_path", "train_data_dir", "output_dir", "output_name",
                "resume_from_checkpoint")
LLM_HOLDER = "llm"  # in host.holders while the worker holds a model: the host's checkpoint stays out of VRAM
DEFAULT_NAME = "my_llm_lora"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "template.json", "training_config.yaml")


def _default_dir(host: Host, name: str) -> Path:
    return host.settings().work_dir.parent / name


def models_dir(host: Host) -> Path:
    return host.settings().llm_models_dir or _default_dir(host, "LLM")


def adapters_dir(host: Host) -> Path:
    return host.settings().llm_lora_dir or _default_dir(host, "LLM-LoRA")


def parse_adapters(text: str) -> list[tuple[str, float]]:
    """`name-or-folder[:weight]` lines (weight 1 when not given)."""
    items = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        path, sep, weight = line.rpartition(":")
        try:
            items.append((path.strip(), float(weight)) if sep and path.strip() else (line, 1.0))
        except ValueError:
            items.append((line, 1.0))
    return items


@dataclass
class LLMJobHooks:
    """Around a text job: free the GPU (the host's model, the worker's model) before; publish and bring back after.

    The image tab's jobs use the host's own hooks; `host.holders` keeps them from bringing the WebUI's
    checkpoint back while the LLM tab holds a model."""

    host: Host
    worker: ModelWorker

    def before_start(self, state: JobState) -> Followup:
        notes = [self.host.release_model()]
        if self.worker.loaded and self.worker.request("park").get("moved"):
            notes.append("The test model was moved to the CPU while training; it comes back when the job ends.")
        return Followup([(note, "info") for note in notes if note])

    def after_finish(self, state: JobState) -> Followup:
        followup = Followup()
        try:
            if state.status in ("done", "interrupted") and state.lora_path and Path(state.lora_path).is_dir():
                followup.lora_path = str(publish_adapter(Path(state.lora_path), adapters_dir(self.host)))
        finally:
            try:
                if self.worker.loaded:
                    self.worker.request("unpark")
            except UserError as exc:  # the worker died meanwhile: say so, and still give the GPU back
                followup.messages.append((str(exc), "warning"))
            note = self.host.restore_model()  # not while the LLM tab holds a model (host.holders)
            followup.messages += [(note, "info")] if note else []
        return followup


def publish_adapter(adapter: Path, folder: Path) -> Path:
    """Copy a trained adapter folder into `folder`, under its name or the next free version of it; the adapter of
    a resumed run replaces the copy of its own partial adapter (core/ownership.py), never another folder."""
    target = free_folder_path(folder, adapter.name, run_id=saved_by(adapter))
    write = rewrite_folder if target.exists() else write_new_folder
    return write(target, lambda staging: shutil.copytree(adapter, staging, dirs_exist_ok=True))


class LLMController:
    """The LLM tab's actions for one host; the runner and the model worker are shared by every page."""

    def __init__(self, host: Host, runner: JobRunner, worker: ModelWorker, python_fallback: str | None = None):
        self.host = host
        self.runner = runner
        self.worker = worker
        self.python_fallback = python_fallback
        self.specs = form.field_specs(TextConfig, MANAGED_KEYS)

    # --- base model -------------------------------------------------------------------------
    def model_choices(self) -> list[str]:
        """Model folders (with config.json) and .gguf files in the models folder and one level below."""
        folder = models_dir(self.host)
        if not folder.is_dir():
            return []
        found = [path for path in folder.iterdir() if (path / "config.json").is_file() or path.suffix == ".gguf"]
        found += list(folder.glob("*/*.gguf"))
        return sorted(str(path.relative_to(folder)) for path in found)

    def base_model(self, choice: str | None, typed: str | None) -> Path:
        """The path box when filled, else the chosen entry of the models folder."""
        if (typed or "").strip():
            return self.host.path_policy().resolve(typed, "Base model path")
        if not choice:
            raise UserError(f"Choose a base model: put model folders (with config.json) or .gguf files in "
                            f"{models_dir(self.host)}, or type a path.")
        return self.host.path_policy().resolve(str(models_dir(self.host) / choice), "Base model")

    def model_note(self) -> str:
        loaded = self.worker.loaded
        if not loaded:
            return markup.message("No language model is loaded: Load one to test prompts and adapters (training "
                                  "loads its own copy).", "info")
        size = f"{loaded['parameters'] / 1e6:,.1f}M parameters"
        return markup.message(f"Loaded: {loaded['base_model']} ({loaded['model_type']}, {size}, {loaded['dtype']}"
                              f"{', 4-bit' if loaded['quantized'] else ''} on {loaded['device']}"
                              f"{', own chat template' if loaded['chat_template'] else ''}) in "
                              f"{loaded['load_seconds']:.1f} s.", "success")

    def load(self, choice: str | None, typed: str | None, fields: list[Any]) -> str:
        values = form.form_values(self.specs, fields)
        path = self.base_model(choice, typed)
        self.runner.ensure_idle()
        released = self.host.release_model()
        try:
            self.worker.request("load", base_model=str(path), dtype=values["dtype"],
                                load_in_4bit=bool(values["load_in_4bit"]),
                                trust_remote_code=bool(values["trust_remote_code"]))
        except UserError:
            if not self.worker.loaded:
                self.unload()
            raise
        self.host.holders.add(LLM_HOLDER)
        note = markup.message("The WebUI's checkpoint was moved out of VRAM while a language model is loaded; "
                              "Unload brings it back.", "info") if released else ""
        return self.model_note() + note

    def unload(self) -> str:
        if self.worker.loaded:
            self.worker.request("unload")
        self.host.holders.discard(LLM_HOLDER)
        note = None if self.runner.running_in_group() else self.host.restore_model()  # else the job's end does
        return self.model_note() + markup.message(note or "", "info")

    # --- data -------------------------------------------------------------------------------
    def data_keys(self, data_path: str | None) -> dict[str, str | None]:
        """metadata_path for a file, train_data_dir for a folder."""
        path = self.host.path_policy().resolve(data_path or "", "Dataset")
        if not path.exists():
            raise UserError(f"Dataset {path} does not exist: give a .jsonl / .json / .txt file or a folder of them.")
        return {"metadata_path": str(path), "train_data_dir": None} if path.is_file() else \
            {"metadata_path": None, "train_data_dir": str(path)}

    def preview(self, choice: str | None, typed: str | None, data_path: str | None, fields: list[Any],
                rows: int) -> tuple[str, str]:
        """(token statistics, the first rows as the model reads them), as HTML: the engine's preview."""
        config = self.job_config(choice, typed, data_path, "preview", fields)
        result = self.worker.request("preview", config=form.changed_values(config), rows=int(rows or 3))
        return render.preview_stats(result), render.preview_rows(result["rows"], result["template"])

    def preset(self, name: str) -> dict[str, Any]:
        return preset_values(name)

    # --- jobs -------------------------------------------------------------------------------
    def runs_dir(self) -> Path:
        """The work folders of the LLM jobs: one per run, named as the adapter it saves."""
        return self.host.settings().work_dir / "llm"

    def workspace(self, name: str) -> Path:
        return self.runs_dir() / safe_name(name, DEFAULT_NAME)

    def job_config(self, choice: str | None, typed: str | None, data_path: str | None, name: str,
                   fields: list[Any], resume: bool = False) -> TextConfig:
        """The validated text config of the form: the same checks and messages as the CLI."""
        name = safe_name(name, DEFAULT_NAME)
        values = form.form_values(self.specs, fields)
        values.update(self.data_keys(data_path), task_type="text-generation", output_name=name,
                      base_model=str(self.base_model(choice, typed)), output_dir=str(self.workspace(name)),
                      resume_from_checkpoint="latest" if resume else None)
        return build_config(values, "the LLM tab's settings", True, TextConfig, check_text_config)

    def start(self, choice: str | None, typed: str | None, data_path: str | None, name: str, fields: list[Any],
              resume: bool = False) -> str:
        self.runner.ensure_idle()  # and the other kinds of job (worker/jobs.py)
        name = run_name(safe_name(name, DEFAULT_NAME), saves=adapters_dir(self.host), runs=self.runs_dir(),
                        resume=resume, saves_folders=True)
        config = self.job_config(choice, typed, data_path, name, fields, resume)
        workspace = Path(config.output_dir)
        if resume:
            require_resume_folder(workspace, config.output_name)
        python = resolve_worker_python(self.host.settings().worker_python, self.python_fallback)
        values = {"task_type": "text-generation", **form.changed_values(config)}
        spec = JobSpec(python, values, workspace, config.output_name)
        self.runner.start(spec, LLMJobHooks(self.host, self.worker))
        return markup.message(f"{'Resuming' if resume else 'Started'} training {spec.name} on "
                              f"{Path(config.base_model).name}; job files go to {workspace}, the adapter to "
                              f"{adapters_dir(self.host)}.", "info")

    def interrupt(self) -> str:
        return markup.message(self.runner.stop(), "info")

    def result_html(self, state: JobState) -> str:
        if not (state.ended and state.lora_path):
            return ""
        folder = Path(state.lora_path)
        return render.adapter_result(str(folder), [(name, (folder / name).is_file()) for name in ADAPTER_FILES],
                                         state.status == "interrupted")

    # --- the test box -----------------------------------------------------------------------
    def adapter_choices(self) -> list[str]:
        folder = adapters_dir(self.host)
        return sorted(path.name for path in folder.iterdir() if (path / "adapter_config.json").is_file()) \
            if folder.is_dir() else []

    def adapter_path(self, text: str) -> Path:
        local = adapters_dir(self.host) / text
        if text and (local / "adapter_config.json").is_file():
            return local
        return self.host.path_policy().resolve(text, "Adapter")

    def test(self, prompt: str, adapters_text: str, fields: list[Any], max_new_tokens: Any) -> tuple[str, str, str]:
        values = form.form_values(self.specs, fields)
        stack = [[str(self.adapter_path(text)), weight] for text, weight in parse_adapters(adapters_text)]
        if not self.worker.loaded:
            raise UserError("Load a base model first (section 1): the test runs on the loaded model.")
        result = self.worker.request("generate", prompt=prompt or "", adapters=stack, template=values["template"],
                                     max_new_tokens=int(max_new_tokens or 64))
        notes = [(note, "warning") for note in result.get("notes", [])]
        label = ", ".join(f"{Path(path).name} x{weight:g}" for path, weight in stack)
        notes.append((f"Greedy answers in {result['seconds']:.1f} s" + (f"; with {label}." if stack else
                                                                          "; add an adapter to compare."), "info"))
        return (render.readable(result["without"]), render.readable(result.get("with", "")),
                markup.messages(notes))
