"""The "Stack & test" section of the Train LoRA tab: a strength grid of up to two LoRAs, and their merge.

Pick one or two LoRAs of the Lora folder and a list of weights for each (0, the baseline, is
always added); the grid renders the same prompt and seed at every combination and is saved as
one labelled image with its parameters in the job folder's `grids/`. Inside the WebUI the cells
go through the WebUI's own txt2img with `<lora:name:w>` tags (so the WebUI's loader is what is
tested); standalone, the worker renders them with the engine's pipeline (`python -m lora_train grid`).
"Merge" writes the two LoRAs at the chosen weights as one new LoRA in the Lora folder (exact merge,
never over an existing name) with its card and, when a grid was rendered, that grid as preview.
Like the rest of the tab this runs the engine only in a worker process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from ...core.errors import UserError
from ...core.grid_image import GridSpec, compose_grid, parse_weights, save_grid
from ...core.naming import check_output_name, free_lora_path
from ..kit import markup
from ..worker.launch import resolve_worker_python, run_once
from .controller import TabController

NONE = "(none)"
LORA_SUFFIX = ".safetensors"


def lora_choices(folder: Path) -> list[str]:
    """The LoRAs in the folder (and its subfolders), as paths relative to it without the suffix."""
    if not folder.is_dir():
        return []
    return sorted(str(path.relative_to(folder).with_suffix("")) for path in folder.rglob(f"*{LORA_SUFFIX}"))


@dataclass
class StackSection:
    """The section's handlers, over the tab's controller (host, settings, worker interpreter)."""

    ctl: TabController

    @property
    def lora_dir(self) -> Path:
        return self.ctl.host.settings().lora_dir

    def _lora_path(self, choice: str | None) -> Path | None:
        if not choice or choice == NONE:
            return None
        path = self.lora_dir / f"{choice}{LORA_SUFFIX}"
        if not path.is_file():
            raise UserError(f"{path} is no longer there: press Refresh and choose again.")
        return path

    def _chosen(self, first: str | None, second: str | None) -> list[Path]:
        paths = [path for path in (self._lora_path(first), self._lora_path(second)) if path]
        if not paths:
            raise UserError("Choose a LoRA first (LoRA 1).")
        return paths

    def _worker(self, arguments: list[str]) -> str:
        """Run `python -m lora_train ...` in the worker (`launch.run_once`); its stdout, or a UserError saying why."""
        self.ctl.runner.ensure_idle()
        settings = self.ctl.host.settings()
        return run_once(resolve_worker_python(settings.worker_python, self.ctl.python_fallback), arguments, "worker")

    def refresh(self):
        choices = lora_choices(self.lora_dir)
        return gr.update(choices=choices), gr.update(choices=[NONE] + choices)

    def render_grid(self, base_model: str | None, first: str | None, second: str | None, weights_first: str,
                    weights_second: str, prompt: str, negative: str, seed: Any, width: Any, height: Any,
                    steps: Any) -> tuple[Any, str, str]:
        paths = self._chosen(first, second)
        lists = [parse_weights(weights_first, "LoRA 1 weights"), parse_weights(weights_second, "LoRA 2 weights")]
        spec = GridSpec([path.stem for path in paths], lists[:len(paths)], (prompt or "").strip(), negative or "",
                        int(seed or 0), int(width or 512), int(height or 512), int(steps or 20))
        if not spec.prompt:
            raise UserError("Write a prompt for the grid.")
        out_dir = self.ctl.host.settings().work_dir / "grids"
        if self.ctl.host.can_render:
            self.ctl.runner.ensure_idle()
            images = [self.ctl.host.render(spec.prompt_for(row, column), spec.negative_prompt, spec.seed, spec.steps,
                                           spec.width, spec.height) for row, column in spec.cells()]
            spec.base_model = base_model or ""
            spec.infotexts = [str(image.info.get("parameters", "")) for image in images]  # "Lora hashes: ..."
            image, params = save_grid(out_dir, spec, compose_grid(spec, images))
        else:
            base = self.ctl.base_model_path(base_model)
            output = self._worker(["grid", str(base), *map(str, paths), "--weights",
                                   *[",".join(f"{w:g}" for w in weights) for weights in spec.weights],
                                   "--prompt", spec.prompt, "--negative", spec.negative_prompt, "--seed",
                                   str(spec.seed), "--width", str(spec.width), "--height", str(spec.height),
                                   "--steps", str(spec.steps), "--out-dir", str(out_dir)])
            saved = json.loads(output.strip().splitlines()[-1])
            image, params = Path(saved["image"]), Path(saved["params"])
        return (str(image), markup.message(f"Saved the grid as {image} (parameters: {params.name}).", "success"),
                str(image))

    def merge(self, first: str | None, second: str | None, weight_first: Any, weight_second: Any, name: str,
              last_grid: str | None) -> str:
        paths = self._chosen(first, second)
        weights = [float(weight_first or 0), float(weight_second or 0)][:len(paths)]
        target = free_lora_path(self.lora_dir, check_output_name((name or "").strip() or "stack"))
        arguments = ["merge", *map(str, paths), "--weights", *[f"{w:g}" for w in weights], "--out", str(target),
                     "--card"]
        if last_grid and Path(last_grid).is_file():
            arguments += ["--preview", last_grid]
        self._worker(arguments)
        self.ctl.host.refresh_loras()
        tag = f"<lora:{target.stem}:1>"
        return markup.message(f"Saved {target} (exact merge: {tag} equals the two LoRAs at these weights).",
                              "success")


def build_stack_section(ctl: TabController, base_model: gr.components.Component,
                        guarded: Callable[[Callable, int, int], Callable]) -> None:
    """Lay out the section inside the tab being built and wire its events (`guarded` turns errors into messages)."""
    section = StackSection(ctl)
    choices = lora_choices(section.lora_dir)
    with gr.Accordion("6. Stack & test", open=False, elem_id="lora_train_stack_section"):
        with gr.Row():
            first = gr.Dropdown(choices=choices, value=None, label="LoRA 1 (rows)", elem_id="lora_train_stack_lora_1")
            second = gr.Dropdown(choices=[NONE] + choices, value=NONE, label="LoRA 2 (columns)",
                                 elem_id="lora_train_stack_lora_2")
            refresh = gr.Button("Refresh", elem_id="lora_train_stack_refresh")
        with gr.Row():
            weights_first = gr.Textbox(value="0.5, 1", label="LoRA 1 weights (0 is always added)",
                                       elem_id="lora_train_stack_weights_1")
            weights_second = gr.Textbox(value="0.5, 1", label="LoRA 2 weights (0 is always added)",
                                        elem_id="lora_train_stack_weights_2")
        with gr.Row():
            prompt = gr.Textbox(label="Prompt", elem_id="lora_train_stack_prompt")
            negative = gr.Textbox(label="Negative prompt", elem_id="lora_train_stack_negative")
        with gr.Row():
            seed = gr.Number(value=1234, precision=0, label="Seed", elem_id="lora_train_stack_seed")
            width = gr.Number(value=512, precision=0, label="Width", elem_id="lora_train_stack_width")
            height = gr.Number(value=512, precision=0, label="Height", elem_id="lora_train_stack_height")
            steps = gr.Number(value=20, precision=0, label="Steps", elem_id="lora_train_stack_steps")
            run = gr.Button("Render grid", variant="primary", elem_id="lora_train_stack_render")
        note = gr.HTML("", elem_id="lora_train_stack_note")
        grid = gr.Image(label="Strength grid", type="filepath", interactive=False, elem_id="lora_train_stack_grid")
        with gr.Row():
            merge_first = gr.Number(value=1.0, label="Merge: LoRA 1 weight", elem_id="lora_train_stack_merge_1")
            merge_second = gr.Number(value=1.0, label="Merge: LoRA 2 weight", elem_id="lora_train_stack_merge_2")
            name = gr.Textbox(value="stack", label="New LoRA name", elem_id="lora_train_stack_name")
            merge = gr.Button("Merge into a new LoRA", elem_id="lora_train_stack_merge")
        last_grid = gr.State(None)
        refresh.click(guarded(section.refresh, 2, 0), outputs=[first, second])
        run.click(guarded(section.render_grid, 3, 1),
                  inputs=[base_model, first, second, weights_first, weights_second, prompt, negative, seed, width,
                          height, steps], outputs=[grid, note, last_grid])
        merge.click(guarded(section.merge, 1, 0), inputs=[first, second, merge_first, merge_second, name, last_grid],
                    outputs=[note])
