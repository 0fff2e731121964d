"""The "Train LoRA" tab: the layout and the wiring of its events.

Built the same way in the WebUI (from `on_ui_tabs`) and in the standalone server. Uses only
components and arguments that gradio 3.41, 4.40+ and the current gradio all accept (see
`compat.py` for the two that differ). Every handler turns a `UserError` (or anything
unexpected) into a message in the page; nothing reaches the user as a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ...core.errors import UserError
from ..hosts.host import Host
from ..kit import compat, form, job_view, markup
from ..kit.widgets import field_widget, guarded
from ..worker.jobs import TRAINING
from ..worker.runner import JobState
from . import job_record
from .caption_section import CaptionSection
from .controller import MANAGED_INPUTS, TabController
from .presets import CHOICES as PRESET_CHOICES
from .stack_section import build_stack_section
from .use_section import UseSection

TICK_SECONDS = 1.0
MODEL_CHECK_SECONDS = 2.0
LOG_SHOWN = 12  # the log tail shows its last lines without scrolling (gradio 3 cannot autoscroll)


def _load_samples(paths: list[str]) -> list[tuple[Image.Image, str]]:
    images = []
    for path in reversed(paths):
        try:
            with Image.open(path) as image:
                images.append((image.convert("RGB"), Path(path).name))
        except (OSError, ValueError):
            continue
    return images


class TabView:
    """The components of one built tab and the handlers that feed them."""

    def __init__(self, controller: TabController):
        self.ctl = controller
        self.widgets: dict[str, Any] = {}
        self.built_model: dict[str, str | None] = {"loaded": None, "followed": None}  # as `build` found them
        self.use = UseSection(controller)

    # --- layout -----------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        ctl, host = self.ctl, self.ctl.host
        start_note = ""
        try:
            values = ctl.initial_values()
        except UserError as exc:
            values, start_note = {spec.name: spec.default for spec in ctl.specs}, markup.message(str(exc), "error")
        titles, default_model = ctl.model_choices()
        vaes, default_vae = ctl.vae_choices()
        with gr.Blocks(analytics_enabled=False) as tab:
            gr.HTML('<h2 class="lora-train-title">Train a LoRA</h2>')
            with gr.Accordion("1. Base model", open=True, elem_id="lora_train_model_section"):
                model_note = gr.HTML(ctl.model_summary(), elem_id="lora_train_model_note")
                with gr.Row():
                    base_model = gr.Dropdown(choices=titles, value=default_model, allow_custom_value=True,
                                             label="Train on (checkpoint)", elem_id="lora_train_base_model",
                                             info="The WebUI's loaded checkpoint, another one, or a path.")
                    vae = gr.Dropdown(choices=vaes, value=default_vae, allow_custom_value=True, label="VAE",
                                      elem_id="lora_train_vae")
                    refresh = gr.Button("Refresh lists", elem_id="lora_train_refresh_models")
            with gr.Accordion("2. Dataset", open=True, elem_id="lora_train_dataset_section"):
                with gr.Row():
                    data_dir = gr.Textbox(label="Dataset folder", elem_id="lora_train_data_dir",
                                          placeholder="a folder of images with same-name .txt captions")
                    scan = gr.Button("Check dataset", elem_id="lora_train_scan")
                captions = CaptionSection(ctl)
                captions.build()
                dataset_note = gr.HTML("", elem_id="lora_train_dataset_note")
                gallery = gr.Gallery(label="Images and captions", columns=6, height=260, object_fit="contain",
                                     elem_id="lora_train_dataset_gallery")
                with gr.Row():
                    trigger = gr.Textbox(label="Trigger word", elem_id="lora_train_trigger_word",
                                         info="Put in front of every caption; type it in prompts to call the LoRA.")
                    name = gr.Textbox(label="LoRA name", value="my_lora", elem_id="lora_train_output_name",
                                      info="The file name in the Lora folder (never overwritten: _v2, _v3...).")
            with gr.Accordion("3. Settings", open=True, elem_id="lora_train_settings_section"):
                preset = gr.Dropdown(choices=PRESET_CHOICES, value=host.settings().default_preset, label="Preset",
                                     elem_id="lora_train_preset",
                                     info="Fills rank, alpha, learning rates, epochs, batch and resolution.")
                with gr.Row():
                    for spec in ctl.specs:
                        if spec.name in form.BASIC_KEYS:
                            self.widgets[spec.name] = field_widget(spec, values[spec.name])
                with gr.Accordion("Advanced: every setting", open=False, elem_id="lora_train_advanced"):
                    for group in dict.fromkeys(spec.group for spec in ctl.specs):
                        with gr.Accordion(group, open=False):
                            for spec in ctl.specs:
                                if spec.group == group and spec.name not in form.BASIC_KEYS:
                                    self.widgets[spec.name] = field_widget(spec, values[spec.name])
                with gr.Row():
                    config_path = gr.Textbox(label="Config file (YAML, the same the CLI runs)",
                                             elem_id="lora_train_config_path", value=ctl.config_path("my_lora"))
                    save = gr.Button("Save config", elem_id="lora_train_save_config")
                    load = gr.Button("Load config", elem_id="lora_train_load_config")
                config_text = gr.Textbox(label="Saved config", lines=6, interactive=False,
                                         elem_id="lora_train_config_text")
            with gr.Accordion("4. Train", open=True, elem_id="lora_train_run_section"):
                worker_note, worker_ready = ctl.worker_status()
                worker_note = gr.HTML(worker_note, elem_id="lora_train_worker_note")
                with gr.Row():
                    start = gr.Button("Start training", variant="primary", interactive=worker_ready,
                                      elem_id="lora_train_start")
                    stop = gr.Button("Interrupt (save what is trained)", variant="stop", elem_id="lora_train_stop")
                    resume = gr.Button("Resume", interactive=worker_ready, elem_id="lora_train_resume")
                action_note = gr.HTML(start_note, elem_id="lora_train_action_note")
                progress = gr.HTML("", elem_id="lora_train_progress")
                job_note = gr.HTML("", elem_id="lora_train_job_note")
                with gr.Row():
                    chart = gr.HTML("", elem_id="lora_train_chart")
                    samples = gr.Gallery(label="Latest samples", columns=4, height=220, object_fit="contain",
                                         elem_id="lora_train_samples")
                log = gr.Textbox(label="Log (latest lines)", lines=LOG_SHOWN, max_lines=LOG_SHOWN, interactive=False,
                                 elem_id="lora_train_log")
            use = self.use
            use.build(values.get("preferred_weight", 0.8))
            build_stack_section(ctl, base_model, guarded)
            page = compat.page_memory()
            auto_config_path = gr.State(ctl.config_path("my_lora"))  # the path as the name gave it, until edited
            self.built_model = {"loaded": ctl.loaded_title(), "followed": default_model}

            managed = [base_model, vae, data_dir, trigger, name]
            fields = [self.widgets[spec.name] for spec in ctl.specs]
            form_inputs = managed + fields

            refresh.click(guarded(self.refresh_models, 3, 2), outputs=[base_model, vae, model_note])
            scan.click(guarded(self.scan, 2, 0), inputs=form_inputs, outputs=[dataset_note, gallery])
            preset.change(guarded(self.apply_preset, len(fields) + 1, len(fields)), inputs=[preset, base_model],
                          outputs=fields + [action_note])
            save.click(guarded(self.save_config, 2, 0), inputs=[config_path] + form_inputs,
                       outputs=[action_note, config_text])
            load.click(guarded(self.load_config, len(form_inputs) + 1, len(form_inputs)), inputs=[config_path],
                       outputs=form_inputs + [action_note])
            start.click(guarded(self.start, 1, 0), inputs=[page] + form_inputs, outputs=[action_note])
            resume.click(guarded(self.resume, 1, 0), inputs=[page] + form_inputs, outputs=[action_note])
            stop.click(guarded(self.interrupt, 1, 0), inputs=[page], outputs=[action_note])
            base_model.change(self.chosen_model, inputs=[base_model, page], outputs=[])
            name.change(guarded(self.follow_name, 2, 0), inputs=[name, config_path, auto_config_path],
                        outputs=[config_path, auto_config_path])
            use.wire(page)
            compat.every(tab, MODEL_CHECK_SECONDS, guarded(self.follow_model, 2, 0), inputs=[page],
                         outputs=[model_note, base_model])
            compat.every(tab, MODEL_CHECK_SECONDS, guarded(self.worker_state, 3, 0), inputs=[],
                         outputs=[worker_note, start, resume])
            compat.every(tab, TICK_SECONDS, guarded(self.tick, 8, 2), inputs=[page],
                         outputs=[progress, chart, job_note, samples, log, use.c["result"], use.c["tag"],
                                  action_note])
            tab.load(guarded(self.job_form, len(form_inputs) + 1, len(form_inputs)), inputs=[],
                     outputs=form_inputs + [action_note])
            captions.wire(tab, data_dir, trigger)
        return tab

    # --- handlers ---------------------------------------------------------------------------
    def _split(self, args: tuple) -> tuple[dict[str, Any], list[Any]]:
        return dict(zip(MANAGED_INPUTS, args[:len(MANAGED_INPUTS)])), list(args[len(MANAGED_INPUTS):])

    def refresh_models(self):
        titles, default_model = self.ctl.model_choices()
        vaes, default_vae = self.ctl.vae_choices()
        return (gr.update(choices=titles, value=default_model), gr.update(choices=vaes, value=default_vae),
                self.ctl.model_summary())

    def chosen_model(self, base_model: str | None, page: dict) -> None:
        page["base_model"] = base_model  # for follow_model, which gradio 3 gives the page-load value only

    def follow_model(self, page: dict):
        """Keep the note on the WebUI's loaded checkpoint current, and the choice with it unless the user chose.

        The WebUI loads its checkpoint after the tab is built, and the user may switch it at any time.
        """
        loaded = self.ctl.loaded_title()
        seen = page.setdefault("model", dict(self.built_model))
        if loaded == seen["loaded"]:
            return gr.update(), gr.update()
        follows = loaded is not None and page.get("base_model", seen["followed"]) in (None, "", seen["followed"])
        seen.update(loaded=loaded, followed=loaded if follows else seen["followed"])
        return self.ctl.model_summary(), gr.update(value=loaded) if follows else gr.update()

    def scan(self, *args):
        return self.ctl.scan(*self._split(args))

    def apply_preset(self, name: str, base_model: str | None):
        values = self.ctl.preset(name, base_model)
        updates = [gr.update(value=form.to_widget(spec, values[spec.name])) if spec.name in values else gr.update()
                   for spec in self.ctl.specs]
        return updates + [markup.message(f"Preset {name} applied.", "info")]

    def save_config(self, path: str, *args):
        inputs, fields = self._split(args)
        return self.ctl.save_config(path, inputs, fields)

    def load_config(self, path: str):
        values = self.ctl.read_config(path)
        managed = [gr.update(value=values[key]) if values.get(key) is not None else gr.update()
                   for key in MANAGED_INPUTS]
        fields = [gr.update(value=form.to_widget(spec, values[spec.name])) if spec.name in values else gr.update()
                  for spec in self.ctl.specs]
        return managed + fields + [markup.message(f"Loaded {len(values)} settings from {path}.", "success")]

    def start(self, page: dict, *args):
        inputs, fields = self._split(args)
        with job_view.note_about_job(page, self.ctl.runner):
            return self.ctl.start(inputs, fields)

    def resume(self, page: dict, *args):
        inputs, fields = self._split(args)
        with job_view.note_about_job(page, self.ctl.runner):
            return self.ctl.start(inputs, fields, resume=True)

    def interrupt(self, page: dict):
        with job_view.note_about_job(page, self.ctl.runner):
            return self.ctl.interrupt()

    def worker_state(self):
        note, ready = self.ctl.worker_status()
        return note, gr.update(interactive=ready), gr.update(interactive=ready)

    def follow_name(self, name: str, path: str, auto: str):
        """The config file path follows the LoRA name, unless the user typed another path."""
        if path not in ("", auto):
            return gr.update(), auto
        new = self.ctl.config_path(name)
        return new, new

    def tick(self, page: dict):
        """The job's parts that changed since the page got them, and how it ended for the note that spoke of it."""
        state: JobState | None = self.ctl.runner.snapshot()
        note = job_view.ended_note(page, state) or gr.update()
        if not job_view.job_changed(page, state):
            return [gr.update() for _ in range(7)] + [note]
        samples = gr.update(value=_load_samples(state.samples)) if page.get("samples") != state.samples else \
            gr.update()
        page["samples"] = list(state.samples)
        status = state.status if state.ended or not state.finished else "finishing"
        bar = markup.progress(status, state.step,
                              state.total, state.epoch, state.epochs, state.its, state.eta_s, state.loss)
        return [bar, markup.loss_chart(state.losses), markup.messages(state.messages), samples,
                "\n".join(list(state.log)[-LOG_SHOWN:]), *self.use.shown(state, page), note]

    def job_form(self):
        """When a page opens: the form of the running or last job, not the defaults (none: the form as built)."""
        state = self.ctl.runner.snapshot()
        if state is None:
            return [gr.update() for _ in range(len(MANAGED_INPUTS) + len(self.ctl.specs) + 1)]
        managed, values = self.ctl.job_form(state.settings)
        return ([gr.update(value=managed[key]) for key in MANAGED_INPUTS] +
                [gr.update(value=form.to_widget(spec, values[spec.name])) for spec in self.ctl.specs] + [gr.update()])


def build_tab(host: Host, python_fallback: str | None = None) -> gr.Blocks:
    """The tab for `host`, sharing the process-wide job runner; after a restart, the runner holds the last job
    the tab trained."""
    TRAINING.adopt(job_record.last_ended(host.settings().work_dir))
    return TabView(TabController(host, TRAINING, python_fallback)).build()
