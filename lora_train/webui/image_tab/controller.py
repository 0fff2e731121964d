"""What the tab's buttons do: turn the form into a job, start / stop / resume it, report on it.

Each action returns plain values (HTML, lists, dicts of config values); `tab.py` wires them
to gradio components. Problems the user can fix arrive as `UserError` and are shown as
messages by `tab.py`, never as tracebacks.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...config.schema import TrainConfig
from ...core.errors import UserError
from ...core.naming import lora_files, run_name
from ...core.resume_folders import require_resume_folder
from ..hosts.gpu_memory import memory_for_training
from ..hosts.host import Host
from ..hosts.model_files import ModelInfo, sniff_arch
from ..hosts.paths import safe_name
from ..kit import form, markup
from ..worker.background_setup import setup_state
from ..worker.launch import resolve_worker_python
from ..worker.runner import Followup, JobRunner, JobSpec, JobState
from . import job_record, render
from .dataset_review import review_dataset
from .presets import AUTO_PRESET, auto_form_values, preset_choices, preset_form_values
from .try_lora import DEFAULT_STEPS, TryRender, try_request

AUTOMATIC_VAE = "Automatic (the checkpoint's own)"
MANAGED_INPUTS = ("base_model", "vae", "train_data_dir", "trigger_word", "output_name")


@dataclass
class HostHooks:
    """Around a job: free the host's GPU before; refresh the Lora list, record the job (`job_record`) and reload
    the model after."""

    host: Host

    def before_start(self, state: JobState) -> Followup:
        note = self.host.release_model()
        return Followup([(note, "info")] if note else [])

    def after_finish(self, state: JobState) -> Followup:
        problem = None
        try:
            if state.status in ("done", "interrupted") and state.lora_path:
                self.host.refresh_loras()
                problem = job_record.save(state)  # offered again after a restart
        finally:
            note = self.host.restore_model()
        messages = [(note, "info")] if note else []
        return Followup(messages + [(problem, "warning")] if problem else messages)


class TabController:
    """The tab's actions for one host; the runner (one job at a time) is shared by every page."""

    def __init__(self, host: Host, runner: JobRunner, python_fallback: str | None = None):
        self.host = host
        self.runner = runner
        self.python_fallback = python_fallback
        self.specs = form.field_specs()
        self.trial: TryRender | None = None  # the latest "Test now"

    # --- base model ---------------------------------------------------------------------
    def loaded_title(self) -> str | None:
        current = self.host.current_model()
        return current.title if current else None

    def model_summary(self) -> str:
        current = self.host.current_model()
        if current is not None:
            items = [(f"Loaded in the {self.host.name}: {current.describe()}", "info")]
            selection = self.host.parts(Path(current.path))
            if selection is not None:
                items += [(f"With {selection.describe()}", "info")] if selection.describe() else []
                items += [(problem, "warning")] if (problem := selection.problem()) else []
            return markup.messages(items)
        if self.host.can_render:
            return markup.message("No checkpoint is loaded in the WebUI; choose one below.", "warning")
        return ""

    def model_choices(self) -> tuple[list[str], str | None]:
        titles = [model.title for model in self.host.checkpoints()]
        current = self.host.current_model()
        default = current.title if current else (titles[0] if titles else None)
        if current and current.title not in titles:
            titles.insert(0, current.title)
        return titles, default

    def vae_choices(self) -> tuple[list[str], str]:
        return [AUTOMATIC_VAE] + [vae.title for vae in self.host.vaes()], AUTOMATIC_VAE

    def _model_path(self, choice: str | None, models: list[ModelInfo], what: str) -> Path:
        for model in models:
            if choice in (model.title, model.path):
                return Path(model.path)
        return self.host.path_policy().resolve(choice or "", what)

    def base_model_path(self, choice: str | None) -> Path:
        """The file (or folder) of the base model chosen in the tab."""
        return self._model_path(choice, self.host.checkpoints(), "Base model")

    def base_model_arch(self, choice: str | None) -> str | None:
        current = self.host.current_model()
        if current and choice == current.title:
            return current.arch
        try:
            return sniff_arch(self._model_path(choice, self.host.checkpoints(), "Base model"))
        except UserError:
            return None

    # --- dataset, presets, defaults -------------------------------------------------------
    def scan(self, inputs: dict[str, Any], fields: list[Any]) -> tuple[str, list]:
        values = self._form(inputs, fields)
        review = review_dataset(values)
        items = [(review.summary(Path(values["train_data_dir"])), "success")]
        return markup.messages(items + [(text, "warning") for text in review.warnings]), review.gallery()

    def preset(self, name: str, base_model: str | None) -> dict[str, Any]:
        return preset_form_values(name, self.base_model_arch(base_model))

    def chosen_preset(self, name: str, inputs: dict[str, Any], fields: list[Any]) -> tuple[dict[str, Any], str]:
        """(the form values of preset `name`, the note saying what it did) for the form `inputs` / `fields`."""
        if name != AUTO_PRESET:
            return self.preset(name, inputs["base_model"]), markup.message(f"Preset {name} applied.", "info")
        values = self._form(inputs, fields)
        values["base_model"] = str(self._model_path(inputs["base_model"], self.host.checkpoints(), "Base model"))
        proposed, reasons = auto_form_values(values, memory_for_training())
        return proposed, markup.messages([("Auto preset: edit any value before Start.", "success")] +
                                         [(line, "info") for line in reasons])

    def presets_offered(self, base_model: str | None, current: str | None) -> tuple[list[str], str]:
        """The presets for the base model's family, and the one to show: `current` if offered, else the first."""
        choices = preset_choices(self.base_model_arch(base_model))
        return choices, current if current in choices else choices[0]

    def initial_values(self) -> dict[str, Any]:
        """The form at start: schema defaults, then the default preset (the model family's first when the default
        is not offered for it), then the defaults file."""
        settings = self.host.settings()
        default_model = self.model_choices()[1]
        values: dict[str, Any] = {spec.name: spec.default for spec in self.specs}
        values.update(self.preset(self.presets_offered(default_model, settings.default_preset)[1], default_model))
        if settings.defaults_file:
            values.update(self.read_config(settings.defaults_file))
        return values

    def job_form(self, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the managed inputs, every field's value) that give the job of `settings` (its job.yaml): the form of
        a running or finished job, as the page shows it again after a reload or a restart."""
        def title(path: str | None, models: list[ModelInfo], default: str | None) -> str | None:
            return next((model.title for model in models if model.path == path), path or default)

        managed = dict(base_model=title(settings.get("base_model"), self.host.checkpoints(), None),
                       vae=title(settings.get("vae"), self.host.vaes(), AUTOMATIC_VAE),
                       train_data_dir=settings.get("train_data_dir", ""), trigger_word=settings.get("trigger_word", ""),
                       output_name=self.typed_name(settings.get("output_name") or "my_lora"))
        return managed, {spec.name: settings.get(spec.name, spec.default) for spec in self.specs}

    def typed_name(self, run: str) -> str:
        """The name typed for a run: `my_lora` for the run `my_lora_v2` when the name `my_lora` is taken (so Start
        takes the next version again, and Resume finds the run)."""
        stem, _, version = run.rpartition("_v")
        taken = stem and (self.workspace(stem).is_dir() or (self.host.settings().lora_dir / f"{stem}.safetensors")
                          .exists())
        return stem if version.isdigit() and taken else run

    # --- config files ---------------------------------------------------------------------
    def read_config(self, path_text: str) -> dict[str, Any]:
        return form.read_config_file(self.host.path_policy().resolve(path_text, "Config file"))

    def _form(self, inputs: dict[str, Any], fields: list[Any]) -> dict[str, Any]:
        """The form's values with the dataset keys; every typed path checked against the path policy."""
        policy = self.host.path_policy()
        values = form.form_values(self.specs, fields)
        for key in ("metadata_path", "pretrained_lora"):
            if values.get(key):
                values[key] = str(policy.resolve(values[key], key))
        values.update(train_data_dir=str(policy.resolve(inputs["train_data_dir"], "Dataset folder")),
                      trigger_word=(inputs["trigger_word"] or "").strip())
        return values

    def job_config(self, inputs: dict[str, Any], fields: list[Any], resume: bool = False,
                   name: str | None = None) -> TrainConfig:
        """The validated config of the form (saved under `name`, default the form's): the CLI's checks and messages."""
        values = self._form(inputs, fields)
        name = name or safe_name(inputs["output_name"])
        vae = inputs["vae"]
        base_model = self._model_path(inputs["base_model"], self.host.checkpoints(), "Base model")
        values.update(
            task_type="image", output_name=name, output_dir=str(self.workspace(name)),
            lora_output_dir=str(self.host.settings().lora_dir), base_model=str(base_model),
            vae=None if vae in (None, "", AUTOMATIC_VAE) else str(self._model_path(vae, self.host.vaes(), "VAE")),
            resume_from_checkpoint="latest" if resume else None)
        values.update(self._selected_parts(base_model, values))
        return form.validate(values)

    def _selected_parts(self, base_model: Path, values: dict[str, Any]) -> dict[str, str]:
        """The part files (ae, clip_l, t5xxl) the host's selector names for the keys the form leaves empty; a
        UserError naming what to select when a part is neither selected, typed nor in the checkpoint."""
        selection = self.host.parts(base_model)
        if selection is None:
            return {}
        given = [key for key in selection.keys if values.get(key)]
        if problem := selection.problem(given):
            raise UserError(problem)
        return {key: path for key, path in selection.files.items() if key not in given}

    def config_path(self, name: str) -> str:
        """Where "Save config" writes by default: `<work folder>/<LoRA name>.yaml`."""
        return str(self.host.settings().work_dir / f"{safe_name(name)}.yaml")

    def workspace(self, name: str) -> Path:
        return self.host.settings().work_dir / safe_name(name)

    def save_config(self, path_text: str, inputs: dict[str, Any], fields: list[Any]) -> tuple[str, str]:
        path = self.host.path_policy().resolve(path_text, "Config file")
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise UserError(f"Config file {path}: use a .yaml file name.")
        text = form.dump_yaml(form.changed_values(self.job_config(inputs, fields)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return markup.message(f"Saved {path}; train it from a shell with: python -m lora_train train --config "
                              f"{path}", "success"), text

    # --- jobs -----------------------------------------------------------------------------
    def worker_status(self) -> tuple[str, bool]:
        """(note, whether Start can run): the worker venv's set-up progress until it is ready (the WebUI starts
        while it is made); nothing to say when another interpreter runs the jobs."""
        if os.environ.get("LORA_TRAIN_PYTHON") or self.host.settings().worker_python.strip() or self.python_fallback:
            return "", True
        state = setup_state()
        if state.ready:
            return "", True
        if state.failed:
            return markup.message(state.text, "error"), False
        return markup.message("Setting up the training environment (first launch only; about a minute, longer on a "
                              f"slow connection). Start is enabled when it is ready. Now: {state.text}", "info"), False

    def start(self, inputs: dict[str, Any], fields: list[Any], resume: bool = False) -> str:
        self.runner.ensure_idle()
        settings = self.host.settings()
        name = run_name(safe_name(inputs["output_name"]), saves=settings.lora_dir, runs=settings.work_dir,
                        resume=resume)
        config = self.job_config(inputs, fields, resume, name)
        workspace = Path(config.output_dir)
        if resume:
            require_resume_folder(workspace, config.output_name)
        review_dataset(asdict(config))  # a dataset with nothing usable stops here, with the trainer's message
        python = resolve_worker_python(settings.worker_python, self.python_fallback)
        spec = JobSpec(python, form.changed_values(config), workspace, config.output_name)
        self.runner.start(spec, HostHooks(self.host))
        verb = "Resuming" if resume else "Started"
        return markup.message(f"{verb} training {spec.name} on {Path(config.base_model).name}; files go to "
                              f"{workspace}.", "info")

    def interrupt(self) -> str:
        return markup.message(self.runner.stop(), "info")

    def lora_tag(self, state: JobState | None, weight: float) -> str:
        if state is None or not state.lora_path:
            return ""
        return f"<lora:{Path(state.lora_path).stem}:{float(weight):g}>"

    def result_html(self, state: JobState, weight: float) -> str:
        if not (state.ended and state.lora_path):
            return ""
        lora = Path(state.lora_path)
        *own, preview = lora_files(lora)  # the preview only when there is one: not every LoRA has one
        files = [(path.name, path.is_file()) for path in own] + ([(preview.name, True)] if preview.is_file() else [])
        return render.result(str(lora), files, self.lora_tag(state, weight), state.status == "interrupted")

    def test_now(self, prompt: str, seed: Any, weight: float, steps: Any = DEFAULT_STEPS, size: Any = 0) -> TryRender:
        """Start rendering the prompt (default: the trigger word) without and with the LoRA, at `size` (0: the
        training's sample resolution) with `steps` steps."""
        state = self.runner.snapshot()
        if not self.host.can_render:
            raise UserError("Test renders need the WebUI; in the standalone server, load the LoRA in your own UI.")
        if state is None or not state.lora_path or not state.ended:
            raise UserError("Train a LoRA first: the test renders the same prompt and seed with and without it.")
        self.runner.ensure_idle()
        if self.trial is not None and not self.trial.wait(0):
            raise UserError("A test render is running: wait for it, or press Stop test.")
        job = {**{spec.name: spec.default for spec in self.specs}, **state.settings}
        prompt = (prompt or "").strip() or job.get("trigger_word") or state.name
        size = size or job["sample_resolution"] or job["resolution"]
        self.trial = TryRender(self.host, try_request(prompt, self.lora_tag(state, weight), seed, steps, size))
        return self.trial

    def stop_test(self) -> str:
        if self.trial is None or self.trial.wait(0):
            return markup.message("No test render is running.", "info")
        self.trial.stop()
        return markup.message("Stopping the test render...", "info")
