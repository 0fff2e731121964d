"""The "Train LoRA" tab: the wiring of its events and their handlers (its sections' layout: `layout`).

Built the same way in the WebUI (from `on_ui_tabs`) and in the standalone server. Uses only
components and arguments that gradio 3.41, 4.40+ and the current gradio all accept (see
`kit/compat.py` for the two that differ). Every handler turns a `UserError` (or anything
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
from ..kit.widgets import guarded
from ..worker.jobs import TRAINING
from ..worker.runner import JobState
from . import job_record, layout
from .controller import MANAGED_INPUTS, TabController
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

    # --- layout and wiring -------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        ctl = self.ctl
        start_note = ""
        try:
            values = ctl.initial_values()
        except UserError as exc:
            values, start_note = {spec.name: spec.default for spec in ctl.specs}, markup.message(str(exc), "error")
        with gr.Blocks(analytics_enabled=False) as tab:
            gr.HTML('<h2 class="lora-train-title">Train a LoRA</h2>')
            c = layout.model_section(ctl)
            c.update(layout.dataset_section(ctl))
            c.update(layout.settings_section(ctl, values, self.widgets))
            c.update(layout.train_section(ctl, start_note, LOG_SHOWN))
            self.use.build(values.get("preferred_weight", 0.8))
            build_stack_section(ctl, c["base_model"], guarded)
            self.built_model = {"loaded": ctl.loaded_title(), "followed": c["default_model"]}
            self._wire(tab, c)
        return tab

    def _wire(self, tab: gr.Blocks, c: dict[str, Any]) -> None:
        """The events of the tab's components `c` (from `layout`), of its Use it section and of its captions."""
        page = compat.page_memory()
        auto_config_path = gr.State(self.ctl.config_path("my_lora"))  # the path as the name gave it, until edited
        fields = [self.widgets[spec.name] for spec in self.ctl.specs]
        form_inputs = [c["base_model"], c["vae"], c["data_dir"], c["trigger"], c["name"]] + fields
        use = self.use
        c["refresh"].click(guarded(self.refresh_models, 3, 2), outputs=[c["base_model"], c["vae"], c["model_note"]])
        c["scan"].click(guarded(self.scan, 2, 0), inputs=form_inputs, outputs=[c["dataset_note"], c["gallery"]])
        c["preset"].change(guarded(self.apply_preset, len(fields) + 1, len(fields)),
                           inputs=[c["preset"]] + form_inputs, outputs=fields + [c["action_note"]])
        c["save"].click(guarded(self.save_config, 2, 0), inputs=[c["config_path"]] + form_inputs,
                        outputs=[c["action_note"], c["config_text"]])
        c["load"].click(guarded(self.load_config, len(form_inputs) + 1, len(form_inputs)),
                        inputs=[c["config_path"]], outputs=form_inputs + [c["action_note"]])
        c["start"].click(guarded(self.start, 1, 0), inputs=[page] + form_inputs, outputs=[c["action_note"]])
        c["resume"].click(guarded(self.resume, 1, 0), inputs=[page] + form_inputs, outputs=[c["action_note"]])
        c["stop"].click(guarded(self.interrupt, 1, 0), inputs=[page], outputs=[c["action_note"]])
        c["base_model"].change(self.chosen_model, inputs=[c["base_model"], page], outputs=[])
        c["base_model"].change(self.offer_presets, inputs=[c["base_model"], c["preset"]], outputs=[c["preset"]])
        c["name"].change(guarded(self.follow_name, 2, 0), inputs=[c["name"], c["config_path"], auto_config_path],
                         outputs=[c["config_path"], auto_config_path])
        use.wire(page)
        compat.every(tab, MODEL_CHECK_SECONDS, guarded(self.follow_model, 2, 0), inputs=[page],
                     outputs=[c["model_note"], c["base_model"]])
        compat.every(tab, MODEL_CHECK_SECONDS, guarded(self.worker_state, 3, 0), inputs=[],
                     outputs=[c["worker_note"], c["start"], c["resume"]])
        compat.every(tab, TICK_SECONDS, guarded(self.tick, 8, 2), inputs=[page],
                     outputs=[c["progress"], c["chart"], c["job_note"], c["samples"], c["log"], use.c["result"],
                              use.c["tag"], c["action_note"]])
        tab.load(guarded(self.job_form, len(form_inputs) + 1, len(form_inputs)), inputs=[],
                 outputs=form_inputs + [c["action_note"]])
        c["captions"].wire(tab, c["data_dir"], c["trigger"])

    # --- handlers ---------------------------------------------------------------------------
    def _split(self, args: tuple) -> tuple[dict[str, Any], list[Any]]:
        return dict(zip(MANAGED_INPUTS, args[:len(MANAGED_INPUTS)])), list(args[len(MANAGED_INPUTS):])

    def refresh_models(self):
        titles, default_model = self.ctl.model_choices()
        vaes, default_vae = self.ctl.vae_choices()
        return (gr.update(choices=titles, value=default_model), gr.update(choices=vaes, value=default_vae),
                self.ctl.model_summary())

    def offer_presets(self, base_model: str | None, current: str | None):
        """The preset list of the chosen model's family (Flux's memory presets, or the Stable Diffusion ones)."""
        choices, shown = self.ctl.presets_offered(base_model, current)
        return gr.update(choices=choices, value=shown)

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

    def apply_preset(self, name: str, *args):
        values, note = self.ctl.chosen_preset(name, *self._split(args))
        updates = [gr.update(value=form.to_widget(spec, values[spec.name])) if spec.name in values else gr.update()
                   for spec in self.ctl.specs]
        return updates + [note]

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
        return [bar, markup.loss_chart(state.losses, state.eval_losses), markup.messages(state.messages), samples,
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
