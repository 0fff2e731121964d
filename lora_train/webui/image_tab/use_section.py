"""The tab's "5. Use it" section: the saved LoRA and its prompt tag, putting the tag into the txt2img prompt,
and "Test now": the same prompt and seed without and with the LoRA, side by side under their labels.

Until a job has ended it says that there is no LoRA yet; after a WebUI restart the runner holds the last
job the tab trained (`job_record`), so it offers that LoRA. Insert says what it did, also when there was
nothing to insert or no txt2img prompt on the page.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..kit import compat, markup
from ..kit.widgets import guarded
from ..worker.runner import JobState
from . import render
from .controller import TabController
from .try_lora import DEFAULT_STEPS

TEST_PROGRESS_SECONDS = 0.5
NO_LORA_YET = markup.message("No LoRA trained yet: train one in section 4, then use and test it here.", "info")
INSERTED = {  # what javascript/lora_train.js's loraTrainInsertTag answers, and what the page then says
    "inserted": ("The tag is in the txt2img prompt.", "success"),
    "no-tag": ("There is no LoRA to insert yet: train one in section 4 (after a restart the tab offers the last "
               "one it trained).", "warning"),
    "no-prompt": ("This page has no txt2img prompt to put the tag into: copy the tag instead.", "warning"),
}


def insert_note(answer: str) -> str:
    """The note on what Insert did, from the page's script's answer."""
    text, level = INSERTED.get(answer, INSERTED["no-prompt"])
    return markup.message(text, level)


class UseSection:
    """Layout (`build`, inside the tab's Blocks), wiring (`wire`) and what the tab's update shows (`shown`)."""

    def __init__(self, ctl: TabController):
        self.ctl = ctl
        self.c: dict[str, Any] = {}
        self.default_weight = 0.8  # the Weight slider's value when a page opens

    def build(self, weight: float) -> None:
        c, host = self.c, self.ctl.host
        self.default_weight = weight
        with gr.Accordion("5. Use it", open=True, elem_id="lora_train_result_section"):
            c["result"] = gr.HTML(NO_LORA_YET, elem_id="lora_train_result")
            with gr.Row():
                c["weight"] = gr.Slider(minimum=-1, maximum=2, step=0.05, value=weight, label="Weight",
                                        elem_id="lora_train_weight")
                c["tag"] = gr.Textbox(label="Prompt tag", interactive=False, elem_id="lora_train_tag")
                c["insert"] = gr.Button("Insert into txt2img prompt", visible=host.inserts_prompts,
                                        elem_id="lora_train_insert")
            c["insert_note"] = gr.HTML("", visible=host.inserts_prompts, elem_id="lora_train_insert_note")
            with gr.Row(visible=host.can_render):
                c["prompt"] = gr.Textbox(label="Test prompt (default: the trigger word)",
                                         elem_id="lora_train_test_prompt")
                c["seed"] = gr.Number(value=1234, precision=0, label="Seed", elem_id="lora_train_test_seed")
                c["steps"] = gr.Number(value=DEFAULT_STEPS, precision=0, label="Steps",
                                       elem_id="lora_train_test_steps")
                c["size"] = gr.Number(value=0, precision=0, label="Size (px; 0: the training resolution)",
                                      elem_id="lora_train_test_size")
                c["test"] = gr.Button("Test now: without / with the LoRA", elem_id="lora_train_test")
                c["test_stop"] = gr.Button("Stop test", elem_id="lora_train_test_stop")
            c["test_note"] = gr.HTML("", visible=host.can_render, elem_id="lora_train_test_note")
            c["test_images"] = gr.HTML("", visible=host.can_render, elem_id="lora_train_test_images")

    def wire(self, page: gr.State) -> None:
        c = self.c
        c["weight"].change(guarded(self.tag_for, 1, 0), inputs=[c["weight"], page], outputs=[c["tag"]])
        c["insert"].click(guarded(insert_note, 1, 0), inputs=[c["tag"]], outputs=[c["insert_note"]],
                          **compat.js("(tag) => [loraTrainInsertTag(tag)]"))
        c["test"].click(self.test_now, inputs=[c[k] for k in ("prompt", "seed", "weight", "steps", "size")],
                        outputs=[c["test_images"], c["test_note"]])
        c["test_stop"].click(guarded(self.ctl.stop_test, 1, 0), outputs=[c["test_note"]])

    def shown(self, state: JobState, page: dict) -> tuple[str, str]:
        """(the result, the prompt tag) of the job, at the weight the page's slider shows."""
        weight = page.get("weight", self.default_weight)
        return self.ctl.result_html(state, weight), self.ctl.lora_tag(state, weight)

    def tag_for(self, weight: float, page: dict) -> str:
        page["weight"] = weight  # for the periodic update, which gradio 3 gives the page-load value only
        return self.ctl.lora_tag(self.ctl.runner.snapshot(), weight)

    def test_now(self, prompt: str, seed: Any, weight: float, steps: Any, size: Any):
        """Streams the render's progress into the note, then the two images (a generator: gradio shows each)."""
        try:
            trial = self.ctl.test_now(prompt, seed, weight, steps, size)
        except Exception as exc:
            yield gr.update(), markup.message(markup.problem(exc), "error")
            return
        while not trial.wait(TEST_PROGRESS_SECONDS):
            yield gr.update(), trial.progress()
        yield render.comparison(trial.images), trial.outcome()
