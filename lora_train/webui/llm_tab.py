"""The "LLM LoRA" tab: a text LoRA on a causal language model, trained and tested in the worker process.

Base model path, data path with a preview (template applied, learned part highlighted, token
statistics), the main settings, start / interrupt with progress, loss and eval loss, and a test box
that answers one prompt without and with the adapter (or a stack of adapters at weights). The job
shares the Train LoRA tab's runner, so only one job runs at a time. No torch in this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from ..core.errors import UserError
from ..text.schema import TEMPLATES
from . import compat, render
from .controller import HostHooks
from .host import Host
from .llm_jobs import LlmWorker, adapters_dir, eval_text, job_config, job_spec, preview_html
from .runner import JobRunner, JobState
from .worker_env import resolve_worker_python

SETTINGS = ("template", "lora_rank", "lora_alpha", "learning_rate", "epochs", "batch_size", "cutoff_len",
            "val_size", "load_in_4bit", "output_name")


class LlmTab:
    def __init__(self, host: Host, runner: JobRunner, python_fallback: str | None = None):
        self.host, self.runner, self.python_fallback = host, runner, python_fallback

    def _worker(self) -> LlmWorker:
        settings = self.host.settings()
        return LlmWorker(resolve_worker_python(settings.worker_python, self.python_fallback), settings.work_dir)

    def _values(self, base_model: str, data: str, settings: tuple) -> dict[str, Any]:
        values = dict(zip(SETTINGS, settings))
        for key in ("lora_rank", "epochs", "batch_size", "cutoff_len"):
            values[key] = int(values[key]) if values[key] is not None else None
        return {"base_model": (base_model or "").strip(), "metadata_path": (data or "").strip(), **values}

    def preview(self, base_model: str, data: str, *settings) -> tuple[str, str]:
        values = self._values(base_model, data, settings)
        return preview_html(self._worker().preview(job_config(values, self.host.settings().lora_dir))), ""

    def start(self, base_model: str, data: str, *settings) -> str:
        self.runner.ensure_idle()
        config = job_config(self._values(base_model, data, settings), self.host.settings().lora_dir)
        worker = self._worker()
        spec = job_spec(worker.python, config, worker.work_dir)
        self.runner.start(spec, HostHooks(self.host))
        return render.message(f"Started training {spec.name}; the adapter goes to {config['output_dir']}.", "info")

    def interrupt(self) -> str:
        return render.message(self.runner.stop(), "info")

    def test(self, prompt: str, adapters: str, base_model: str) -> tuple[str, str, str]:
        if not (prompt or "").strip():
            raise UserError("Type a prompt to test.")
        if self.runner.busy():
            raise UserError("Wait for the training job to end before testing.")
        listed = [line.strip() for line in (adapters or "").splitlines() if line.strip()]
        state = self.runner.snapshot()
        if not listed and state and state.lora_path and Path(state.lora_path).is_dir():
            listed = [state.lora_path]
        answers = self._worker().compare(prompt.strip(), listed, (base_model or "").strip() or None)
        return answers["base"], answers["adapter"], ""

    def tick(self, view: dict | None) -> list:
        state: JobState | None = self.runner.snapshot()
        key = [state.number, state.version] if state else None
        view = view or {}
        if state is None or view.get("key") == key or not state.workspace.name.startswith("llm-"):
            return [gr.update() for _ in range(5)] + [view]
        status = state.status if state.ended or not state.finished else "finishing"
        bar = render.progress(status, state.step, state.total, state.epoch, state.epochs, state.its, state.eta_s,
                              state.loss)
        saved = render.message(f"Adapter saved: {state.lora_path}", "success") if state.ended and state.lora_path \
            and state.status in ("done", "interrupted") else ""
        return [bar, render.loss_chart(state.losses), eval_text(state.evals), render.messages(state.messages),
                saved, {"key": key}]


def _guard(fn, outputs: int, message_at: int):
    def handler(*args):
        try:
            return fn(*args)
        except UserError as exc:
            text = str(exc)
        except Exception as exc:  # a bug: one line here
            text = f"Unexpected problem ({type(exc).__name__}: {exc})."
        result: list[Any] = [gr.update() for _ in range(outputs)]
        result[message_at] = render.message(text, "error")
        return result if outputs > 1 else result[0]

    return handler


def build_llm_tab(host: Host, runner: JobRunner, python_fallback: str | None = None) -> gr.Blocks:
    tab = LlmTab(host, runner, python_fallback)
    with gr.Blocks(analytics_enabled=False) as blocks:
        gr.Markdown(f"Train a LoRA on a causal language model. Adapters are saved in "
                    f"`{adapters_dir(host.settings().lora_dir)}`.")
        base_model = gr.Textbox(label="Base model", elem_id="lora_train_llm_base_model",
                                info="A Hugging Face model folder, a .gguf file, or a hub id")
        data = gr.Textbox(label="Training data", elem_id="lora_train_llm_data",
                          info=".jsonl / .json (alpaca, chat messages or ShareGPT rows) or a .txt of raw text")
        ids = {key: f"lora_train_llm_{key}" for key in SETTINGS}
        with gr.Row():
            widgets = [gr.Dropdown(list(TEMPLATES), value="auto", label="Template", elem_id=ids["template"]),
                       gr.Number(8, precision=0, label="LoRA rank", elem_id=ids["lora_rank"]),
                       gr.Number(16, label="LoRA alpha", elem_id=ids["lora_alpha"]),
                       gr.Number(2e-4, label="Learning rate", elem_id=ids["learning_rate"]),
                       gr.Number(3, precision=0, label="Epochs", elem_id=ids["epochs"]),
                       gr.Number(4, precision=0, label="Batch size", elem_id=ids["batch_size"]),
                       gr.Number(1024, precision=0, label="cutoff_len", elem_id=ids["cutoff_len"]),
                       gr.Number(0.0, label="val_size", elem_id=ids["val_size"]),
                       gr.Checkbox(False, label="load_in_4bit (GPU)", elem_id=ids["load_in_4bit"]),
                       gr.Textbox("my_llm_lora", label="Adapter name", elem_id=ids["output_name"])]
        with gr.Row():
            preview_button = gr.Button("Preview data", elem_id="lora_train_llm_preview_button")
            start_button = gr.Button("Start", variant="primary", elem_id="lora_train_llm_start")
            stop_button = gr.Button("Interrupt", elem_id="lora_train_llm_interrupt")
        message = gr.HTML(elem_id="lora_train_llm_message")
        preview = gr.HTML(elem_id="lora_train_llm_preview")
        progress = gr.HTML(elem_id="lora_train_llm_progress")
        chart = gr.HTML(elem_id="lora_train_llm_chart")
        evals = gr.Markdown(elem_id="lora_train_llm_evals")
        saved = gr.HTML(elem_id="lora_train_llm_saved")
        with gr.Row():
            prompt = gr.Textbox(label="Test prompt", elem_id="lora_train_llm_prompt")
            adapters = gr.Textbox(label="Adapters (FOLDER or FOLDER:WEIGHT per line; empty: the one just trained)",
                                  lines=2, elem_id="lora_train_llm_adapters")
        test_button = gr.Button("Answer with and without the adapter", elem_id="lora_train_llm_test")
        with gr.Row():
            without = gr.Textbox(label="Base model", elem_id="lora_train_llm_answer_base")
            with_adapter = gr.Textbox(label="With the adapter(s)", elem_id="lora_train_llm_answer_adapter")
        view = gr.State({})
        inputs = [base_model, data, *widgets]
        preview_button.click(_guard(tab.preview, 2, 1), inputs=inputs, outputs=[preview, message])
        start_button.click(_guard(tab.start, 1, 0), inputs=inputs, outputs=[message])
        stop_button.click(_guard(tab.interrupt, 1, 0), outputs=[message])
        test_button.click(_guard(tab.test, 3, 2), inputs=[prompt, adapters, base_model],
                          outputs=[without, with_adapter, message])
        compat.every(blocks, 1.0, _guard(tab.tick, 6, 3), inputs=[view],
                     outputs=[progress, chart, evals, message, saved, view])
    return blocks
