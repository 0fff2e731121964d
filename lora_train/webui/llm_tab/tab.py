"""The "LLM LoRA" tab: train a text LoRA on a separately loaded causal language model, and test it.

Built the same way in the WebUI (beside "Train LoRA") and in `python -m lora_train ui`, with the same
gradio subset as the image tab. Sections: 1 the base model (load / unload in the model worker),
2 the dataset with a preview as the model will read it, 3 settings and presets, 4 training with
progress and the loss chart (eval loss as circles), 5 a test box that answers one prompt without
and with adapters side by side. Handlers turn every problem into a message in the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from ...core.errors import UserError
from ..hosts.host import Host
from ..kit import compat, form, job_view, markup
from ..kit.widgets import field_widget, guarded
from ..worker.jobs import LLM_TRAINING
from ..worker.launch import resolve_worker_python
from ..worker.model_worker import ModelWorker
from ..worker.runner import JobState
from .controller import LLMController, adapters_dir, models_dir
from .presets import CHOICES as PRESET_CHOICES, DEFAULT_PRESET

WORKERS: dict[str, ModelWorker] = {}  # the model worker of this process, made by the first tab built
WORKER_LOG = "model-worker.log"  # in <work folder>/llm: what the model worker wrote to stderr
TICK_SECONDS = 1.0
LOG_SHOWN = 10
ID = "lora_train_llm_"
MODEL_KEYS = ("dtype", "load_in_4bit", "trust_remote_code")
DATA_KEYS = ("template", "cutoff_len", "train_on_inputs", "val_size")
BASIC_KEYS = ("lora_rank", "lora_alpha", "learning_rate", "epochs", "batch_size")


def model_worker(host: Host, python_fallback: str | None) -> ModelWorker:
    if "worker" not in WORKERS:
        WORKERS["worker"] = ModelWorker(lambda: resolve_worker_python(host.settings().worker_python, python_fallback),
                                        None, lambda: host.settings().work_dir / "llm" / WORKER_LOG)
    return WORKERS["worker"]


class LLMTabView:
    """The components of one built LLM tab and the handlers that feed them."""

    def __init__(self, controller: LLMController):
        self.ctl = controller
        self.widgets: dict[str, Any] = {}

    def _fields(self, names: tuple[str, ...], values: dict[str, Any]) -> None:
        for spec in self.ctl.specs:
            if spec.name in names:
                self.widgets[spec.name] = field_widget(spec, values[spec.name], ID)

    def build(self) -> gr.Blocks:
        ctl = self.ctl
        values = {spec.name: spec.default for spec in ctl.specs}
        values.update(ctl.preset(DEFAULT_PRESET))
        placed = MODEL_KEYS + DATA_KEYS + BASIC_KEYS
        with gr.Blocks(analytics_enabled=False) as tab:
            gr.HTML('<h2 class="lora-train-title">Train a text LoRA on a language model</h2>')
            with gr.Accordion("1. Base model", open=True, elem_id=f"{ID}model_section"):
                with gr.Row():
                    choices = ctl.model_choices()
                    model_choice = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                                               label=f"Model in {models_dir(ctl.host)}", elem_id=f"{ID}model_choice",
                                               info="Hugging Face model folders (with config.json) and .gguf files.")
                    model_path = gr.Textbox(label="or a path", elem_id=f"{ID}model_path",
                                            placeholder="a model folder or .gguf file elsewhere (wins when filled)")
                    refresh = gr.Button("Refresh", elem_id=f"{ID}refresh")
                with gr.Row():
                    self._fields(MODEL_KEYS, values)
                with gr.Row():
                    load = gr.Button("Load", variant="primary", elem_id=f"{ID}load")
                    unload = gr.Button("Unload", elem_id=f"{ID}unload")
                model_note = gr.HTML(ctl.model_note(), elem_id=f"{ID}model_note")
            with gr.Accordion("2. Dataset", open=True, elem_id=f"{ID}dataset_section"):
                with gr.Row():
                    data_path = gr.Textbox(label="Dataset (.jsonl / .json / .txt file, or a folder of them)",
                                           elem_id=f"{ID}data_path",
                                           placeholder="alpaca rows, chat `messages`, ShareGPT `conversations`, text")
                    preview_rows = gr.Number(value=3, precision=0, label="Rows to show", elem_id=f"{ID}preview_rows")
                    preview = gr.Button("Preview", elem_id=f"{ID}preview")
                with gr.Row():
                    self._fields(DATA_KEYS, values)
                preview_stats = gr.HTML("", elem_id=f"{ID}preview_stats")
                preview_html = gr.HTML("", elem_id=f"{ID}preview_html")
            with gr.Accordion("3. Settings", open=True, elem_id=f"{ID}settings_section"):
                with gr.Row():
                    preset = gr.Dropdown(choices=PRESET_CHOICES, value=DEFAULT_PRESET, label="Preset",
                                         elem_id=f"{ID}preset")
                    name = gr.Textbox(label="Adapter name", value="my_llm_lora", elem_id=f"{ID}output_name",
                                      info=f"The folder in {adapters_dir(ctl.host)} (never overwritten: _v2...).")
                with gr.Row():
                    self._fields(BASIC_KEYS, values)
                with gr.Accordion("Advanced: every setting", open=False, elem_id=f"{ID}advanced"):
                    self._fields(tuple(spec.name for spec in ctl.specs if spec.name not in placed), values)
            with gr.Accordion("4. Train", open=True, elem_id=f"{ID}run_section"):
                with gr.Row():
                    start = gr.Button("Start training", variant="primary", elem_id=f"{ID}start")
                    stop = gr.Button("Interrupt (save what is trained)", variant="stop", elem_id=f"{ID}stop")
                    resume = gr.Button("Resume", elem_id=f"{ID}resume")
                action_note = gr.HTML("", elem_id=f"{ID}action_note")
                progress = gr.HTML("", elem_id=f"{ID}progress")
                job_note = gr.HTML("", elem_id=f"{ID}job_note")
                chart = gr.HTML("", elem_id=f"{ID}chart")
                log = gr.Textbox(label="Log (latest lines)", lines=LOG_SHOWN, max_lines=LOG_SHOWN, interactive=False,
                                 elem_id=f"{ID}log")
                result = gr.HTML("", elem_id=f"{ID}result")
            with gr.Accordion("5. Test", open=True, elem_id=f"{ID}test_section"):
                with gr.Row():
                    adapter_pick = gr.Dropdown(choices=ctl.adapter_choices(), value=None, label="Add an adapter",
                                               elem_id=f"{ID}adapter_pick")
                    adapters = gr.Textbox(label="Adapters (one per line: name or folder, optional :weight)", lines=2,
                                          elem_id=f"{ID}adapters", placeholder="my_llm_lora:1.0")
                with gr.Row():
                    prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{ID}prompt")
                    max_tokens = gr.Number(value=64, precision=0, label="Max new tokens", elem_id=f"{ID}max_tokens")
                    test = gr.Button("Answer without / with the adapters", elem_id=f"{ID}test")
                with gr.Row():
                    without = gr.Textbox(label="Base model", lines=5, interactive=False, elem_id=f"{ID}answer_base")
                    with_adapters = gr.Textbox(label="With the adapters", lines=5, interactive=False,
                                               elem_id=f"{ID}answer_adapted")
                test_note = gr.HTML("", elem_id=f"{ID}test_note")
            page = compat.page_memory()

            fields = [self.widgets[spec.name] for spec in ctl.specs]
            model_inputs = [model_choice, model_path]
            job_inputs = model_inputs + [data_path, name] + fields

            refresh.click(guarded(self.refresh, 3, 2), outputs=[model_choice, adapter_pick, model_note])
            load.click(guarded(self.load, 1, 0), inputs=model_inputs + fields, outputs=[model_note])
            unload.click(guarded(ctl.unload, 1, 0), outputs=[model_note])
            preview.click(guarded(self.preview, 2, 0), inputs=model_inputs + [data_path, preview_rows] + fields,
                          outputs=[preview_stats, preview_html])
            preset.change(guarded(self.apply_preset, len(fields) + 1, len(fields)), inputs=[preset],
                          outputs=fields + [action_note])
            start.click(guarded(self.start, 1, 0), inputs=[page] + job_inputs, outputs=[action_note])
            resume.click(guarded(self.resume, 1, 0), inputs=[page] + job_inputs, outputs=[action_note])
            stop.click(guarded(self.interrupt, 1, 0), inputs=[page], outputs=[action_note])
            adapter_pick.change(self.add_adapter, inputs=[adapter_pick, adapters], outputs=[adapters])
            test.click(guarded(self.test, 3, 2), inputs=[prompt, adapters, max_tokens] + fields,
                       outputs=[without, with_adapters, test_note])
            compat.every(tab, TICK_SECONDS, guarded(self.tick, 8, 2), inputs=[page],
                         outputs=[progress, chart, job_note, log, result, adapters, adapter_pick, action_note])
        return tab

    # --- handlers -----------------------------------------------------------------------------
    def refresh(self):
        choices = self.ctl.model_choices()
        return (gr.update(choices=choices), gr.update(choices=self.ctl.adapter_choices()), self.ctl.model_note())

    def load(self, choice: str | None, typed: str, *fields):
        return self.ctl.load(choice, typed, list(fields))

    def preview(self, choice: str | None, typed: str, data_path: str, rows: Any, *fields):
        return self.ctl.preview(choice, typed, data_path, list(fields), int(rows or 3))

    def apply_preset(self, name: str):
        values = self.ctl.preset(name)
        updates = [gr.update(value=form.to_widget(spec, values[spec.name])) if spec.name in values else gr.update()
                   for spec in self.ctl.specs]
        return updates + [markup.message(f"Preset {name} applied.", "info")]

    def start(self, page: dict, choice: str | None, typed: str, data_path: str, name: str, *fields):
        with job_view.note_about_job(page, self.ctl.runner):
            return self.ctl.start(choice, typed, data_path, name, list(fields))

    def resume(self, page: dict, choice: str | None, typed: str, data_path: str, name: str, *fields):
        with job_view.note_about_job(page, self.ctl.runner):
            return self.ctl.start(choice, typed, data_path, name, list(fields), resume=True)

    def interrupt(self, page: dict):
        with job_view.note_about_job(page, self.ctl.runner):
            return self.ctl.interrupt()

    def add_adapter(self, picked: str | None, current: str):
        if not picked or picked in [line.split(":")[0].strip() for line in (current or "").splitlines()]:
            return gr.update()
        return "\n".join(line for line in [(current or "").strip(), f"{picked}:1.0"] if line)

    def test(self, prompt: str, adapters: str, max_tokens: Any, *fields):
        if not (prompt or "").strip():
            raise UserError("Type a prompt to test.")
        return self.ctl.test(prompt, adapters, list(fields), max_tokens)

    def tick(self, page: dict):
        """The job's parts that changed since the page got them; the adapter it published, offered for a test
        once; how it ended, for the note that spoke of it."""
        state: JobState | None = self.ctl.runner.snapshot()
        note = job_view.ended_note(page, state) or gr.update()
        if not job_view.job_changed(page, state):
            return [gr.update() for _ in range(7)] + [note]
        status = state.status if state.ended or not state.finished else "finishing"
        bar = markup.progress(status, state.step, state.total, state.epoch, state.epochs, state.its, state.eta_s,
                              state.loss)
        published = state.ended and state.lora_path and page.get("published") != state.number
        if published:
            page["published"] = state.number
        return [bar, markup.loss_chart(state.losses, state.eval_losses), markup.messages(state.messages),
                "\n".join(list(state.log)[-LOG_SHOWN:]), self.ctl.result_html(state),
                f"{Path(state.lora_path).name}:1.0" if published else gr.update(),
                gr.update(choices=self.ctl.adapter_choices()) if published else gr.update(), note]


def build_llm_tab(host: Host, python_fallback: str | None = None) -> gr.Blocks:
    """The LLM tab for `host`, sharing the process-wide text job runner and model worker."""
    worker = model_worker(host, python_fallback)
    return LLMTabView(LLMController(host, LLM_TRAINING, worker, python_fallback)).build()
