"""The tab's Caption section: caption the dataset folder in the worker, then review and edit the captions.

Captioning runs as `python -m lora_train caption ... --events jsonl` in the worker (never in the
WebUI process), through a job runner of its own with the same hooks as training (the WebUI's model
leaves VRAM while a captioner runs and comes back after). Editing one caption, adding / removing /
replacing a tag across the folder, tag counts and restoring a backup are plain file work
(`caption.edit`, `caption.writer`), done here; every changed caption is backed up first. The
75-token check needs CLIP's tokenizer, so it asks the worker (`caption DIR --check-length`).
"""

from __future__ import annotations

import html
import json
import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr

from ..caption.edit import bulk_edit, read_captions, save_caption, tag_counts
from ..caption.methods import DEFAULT_MODELS, METHODS, SUGGESTED_MODELS
from ..caption.model_source import is_repo_id
from ..caption.writer import MODES, list_backups, restore_backup
from ..core.errors import UserError
from ..data.images import load_rgb
from . import compat, markup
from .controller import HostHooks, TabController
from .jobs import CAPTIONING
from .runner import JobRunner, JobSpec, JobState
from .worker_env import EXTENSION_ROOT, resolve_worker_python

THUMBNAIL = 160
GALLERY_LIMIT = 60
COUNTS_SHOWN = 40


@dataclass
class CaptionSpec(JobSpec):
    """A captioning job: the worker runs `caption` with these arguments instead of `train`."""

    arguments: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        return [self.python, "-m", "lora_train", "caption", *self.arguments, "--events", "jsonl",
                "--stop-file", str(self.stop_file)]


class CaptionSection:
    """Layout (`build`, inside the tab's Blocks) and wiring (`wire`, once the dataset boxes exist)."""

    def __init__(self, ctl: TabController, runner: JobRunner = CAPTIONING):
        self.ctl = ctl
        self.runner = runner
        self.c: dict[str, Any] = {}

    # --- paths ------------------------------------------------------------------------------
    def captioners_dir(self) -> Path:
        settings = self.ctl.host.settings()
        return settings.captioners_dir or settings.lora_dir.parent / "lora_train" / "captioners"

    def folder(self, text: str) -> Path:
        return self.ctl.host.path_policy().resolve(text, "Dataset folder")

    def model_choices(self, method: str) -> list[str]:
        """Models already in the captioners folder (repo downloads by their id), then the suggested ones."""
        root = self.captioners_dir()
        local = sorted(p.name.replace("--", "/", 1) if "--" in p.name else str(p)
                       for p in (root.iterdir() if root.is_dir() else []) if p.is_dir())
        return list(dict.fromkeys(local + SUGGESTED_MODELS.get(method, [])))

    def _model(self, text: str, method: str) -> str:
        text = (text or "").strip() or DEFAULT_MODELS[method]
        if is_repo_id(text) and not Path(text).exists():
            return text
        return str(self.ctl.host.path_policy().resolve(text, "Captioning model"))

    # --- layout -----------------------------------------------------------------------------
    def build(self) -> None:
        c = self.c
        with gr.Accordion("Caption the images", open=True, elem_id="lora_train_caption_section"):
            with gr.Row():
                c["method"] = gr.Dropdown(choices=list(METHODS), value="tagger", label="Method",
                                          elem_id="lora_train_caption_method",
                                          info="tagger: booru tags; vlm: sentences (BLIP ...); clip: your vocabulary")
                c["model"] = gr.Dropdown(choices=self.model_choices("tagger"), value=DEFAULT_MODELS["tagger"],
                                         allow_custom_value=True, label="Model (folder, file or hub repo id)",
                                         elem_id="lora_train_caption_model")
                c["mode"] = gr.Dropdown(choices=list(MODES), value="skip", label="Images that have a caption",
                                        elem_id="lora_train_caption_mode",
                                        info="skip keeps them; changed captions are backed up first")
            with gr.Row():
                c["general"] = gr.Slider(minimum=0, maximum=1, step=0.01, value=0.35, label="General tag threshold",
                                         elem_id="lora_train_caption_general")
                c["character"] = gr.Slider(minimum=0, maximum=1, step=0.01, value=0.85, label="Character threshold",
                                           elem_id="lora_train_caption_character")
                c["prompt"] = gr.Textbox(label="Prompt (vlm; may use {trigger} {tags} {name})",
                                         elem_id="lora_train_caption_prompt")
                c["vocabulary"] = gr.Textbox(label="Vocabulary file (clip: one phrase per line)",
                                             elem_id="lora_train_caption_vocabulary")
            with gr.Row():
                c["run"] = gr.Button("Caption the folder", variant="primary", elem_id="lora_train_caption_run")
                c["stop"] = gr.Button("Interrupt captioning", variant="stop", elem_id="lora_train_caption_stop")
                c["load"] = gr.Button("Load captions", elem_id="lora_train_caption_load")
                c["check"] = gr.Button("Check the 75-token limit", elem_id="lora_train_caption_check")
            c["note"] = gr.HTML("", elem_id="lora_train_caption_note")
            c["progress"] = gr.HTML("", elem_id="lora_train_caption_progress")
            c["gallery"] = gr.Gallery(label="Captions", columns=6, height=260, object_fit="contain",
                                      elem_id="lora_train_caption_gallery")
            with gr.Row():
                c["image"] = gr.Dropdown(choices=[], label="Image", elem_id="lora_train_caption_image")
                c["text"] = gr.Textbox(label="Its caption", lines=2, elem_id="lora_train_caption_text")
                c["save"] = gr.Button("Save caption", elem_id="lora_train_caption_save")
            with gr.Row():
                c["tag"] = gr.Textbox(label="Tag", elem_id="lora_train_caption_tag")
                c["replacement"] = gr.Textbox(label="Replace with", elem_id="lora_train_caption_replacement")
                c["add"] = gr.Button("Add to every caption", elem_id="lora_train_caption_add")
                c["remove"] = gr.Button("Remove everywhere", elem_id="lora_train_caption_remove")
                c["replace"] = gr.Button("Replace everywhere", elem_id="lora_train_caption_replace")
            with gr.Row():
                c["backup"] = gr.Dropdown(choices=[], label="Caption backup", elem_id="lora_train_caption_backup")
                c["restore"] = gr.Button("Restore this backup", elem_id="lora_train_caption_restore")
            c["counts"] = gr.HTML("", elem_id="lora_train_caption_counts")
            c["view"] = gr.State(None)

    def wire(self, blocks: gr.Blocks, data_dir, trigger) -> None:
        from .widgets import guarded

        c = self.c
        listing = [c["gallery"], c["image"], c["counts"], c["backup"]]
        run_inputs = [data_dir, trigger] + [c[k] for k in ("method", "model", "mode", "general", "character",
                                                            "prompt", "vocabulary")]
        c["run"].click(guarded(self.start, 1, 0), inputs=run_inputs, outputs=[c["note"]])
        c["stop"].click(guarded(self.interrupt, 1, 0), outputs=[c["note"]])
        c["method"].change(guarded(self.method_changed, 2, 1), inputs=[c["method"]], outputs=[c["model"], c["note"]])
        c["load"].click(guarded(self.listing, 5, 4), inputs=[data_dir], outputs=listing + [c["note"]])
        c["image"].change(guarded(self.caption_of, 2, 1), inputs=[data_dir, c["image"]],
                          outputs=[c["text"], c["note"]])
        c["save"].click(guarded(self.save, 5, 4), inputs=[data_dir, c["image"], c["text"]],
                        outputs=listing + [c["note"]])
        for action in ("add", "remove", "replace"):
            c[action].click(guarded(getattr(self, f"bulk_{action}"), 5, 4),
                            inputs=[data_dir, c["tag"], c["replacement"]], outputs=listing + [c["note"]])
        c["restore"].click(guarded(self.restore, 5, 4), inputs=[data_dir, c["backup"]], outputs=listing + [c["note"]])
        c["check"].click(guarded(self.check_length, 1, 0), inputs=[data_dir], outputs=[c["note"]])
        compat.every(blocks, 1.0, guarded(self.tick, 7, 0), inputs=[data_dir, c["view"]],
                     outputs=[c["progress"]] + listing + [c["note"], c["view"]])

    # --- actions ------------------------------------------------------------------------------
    def method_changed(self, method: str):
        return gr.update(choices=self.model_choices(method), value=DEFAULT_MODELS[method]), ""

    def start(self, data_dir: str, trigger: str, method: str, model: str, mode: str, general: float,
              character: float, prompt: str, vocabulary: str) -> str:
        self.runner.ensure_idle()  # and the other kinds of job (jobs.py)
        folder = self.folder(data_dir)
        arguments = [str(folder), "--method", method, "--model", self._model(model, method), "--mode", mode,
                     "--general-threshold", str(general), "--character-threshold", str(character),
                     "--trigger-word", (trigger or "").strip(), "--captioners-dir", str(self.captioners_dir())]
        if method == "vlm" and (prompt or "").strip():
            arguments += ["--prompt", prompt.strip()]
        if method == "clip":
            arguments += ["--vocabulary", str(self.ctl.host.path_policy().resolve(vocabulary, "Vocabulary file"))]
        settings = self.ctl.host.settings()
        python = resolve_worker_python(settings.worker_python, self.ctl.python_fallback)
        workspace = settings.work_dir / "captioning"
        # The folder goes with the job: gradio 3's periodic update re-sends the inputs the page had when it loaded.
        self.runner.start(CaptionSpec(python, {"train_data_dir": str(folder)}, workspace, f"captioning {folder.name}", [str(EXTENSION_ROOT)],
                                      arguments), HostHooks(self.ctl.host))
        return markup.message(f"Captioning {folder} with the {method} ({arguments[4]}).", "info")

    def interrupt(self) -> str:
        if not self.runner.busy():
            return markup.message("No captioning is running.", "info")
        self.runner.stop()
        return markup.message("Stopping after the current batch; the captions written so far are kept.", "info")

    def listing(self, data_dir: str, note: str = ""):
        folder = self.folder(data_dir)
        items = read_captions(folder)
        gallery = []
        for item in items[:GALLERY_LIMIT]:
            try:
                image = load_rgb(item.image)
            except UserError:
                continue
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            gallery.append((image, f"{item.name}: {item.caption or '(no caption)'}"[:300]))
        names = [item.name for item in items]
        backups = list_backups(folder)
        return (gallery, gr.update(choices=names), _counts_html(tag_counts(items), len(items)),
                gr.update(choices=backups, value=backups[-1] if backups else None), note)

    def caption_of(self, data_dir: str, name: str | None):
        if not name:
            return gr.update(), gr.update()
        folder = self.folder(data_dir)
        caption = next((item.caption for item in read_captions(folder) if item.name == name), "")
        return caption, gr.update()

    def save(self, data_dir: str, name: str | None, text: str):
        if not name:
            raise UserError("Choose the image whose caption to save.")
        result = save_caption(self.folder(data_dir), name, text or "")
        return self._after_edit(data_dir, result, f"Saved the caption of {name}")

    def bulk_add(self, data_dir: str, tag: str, replacement: str):
        return self._after_edit(data_dir, bulk_edit(self.folder(data_dir), "add", tag), f"Added {tag.strip()!r}")

    def bulk_remove(self, data_dir: str, tag: str, replacement: str):
        return self._after_edit(data_dir, bulk_edit(self.folder(data_dir), "remove", tag),
                                f"Removed {tag.strip()!r}")

    def bulk_replace(self, data_dir: str, tag: str, replacement: str):
        return self._after_edit(data_dir, bulk_edit(self.folder(data_dir), "replace", tag, replacement),
                                f"Replaced {tag.strip()!r} with {replacement.strip()!r}")

    def _after_edit(self, data_dir: str, result, what: str):
        if not result.changed:
            return self.listing(data_dir, markup.message(f"{what}: no caption needed a change.", "info"))
        backup = f"; the previous versions are in {result.backup_dir}" if result.backup_dir else ""
        return self.listing(data_dir, markup.message(f"{what}: {len(result.changed)} caption(s) changed{backup}.",
                                                     "success"))

    def restore(self, data_dir: str, name: str | None):
        if not name:
            raise UserError("Choose a backup to restore (press Load captions to list them).")
        restored, previous = restore_backup(self.folder(data_dir), name, datetime.now())
        saved = f"; the captions it replaced are in {previous}" if previous else ""
        return self.listing(data_dir, markup.message(f"Restored {len(restored)} caption(s) from {name}{saved}.",
                                                     "success"))

    def check_length(self, data_dir: str) -> str:
        folder = self.folder(data_dir)
        settings = self.ctl.host.settings()
        python = resolve_worker_python(settings.worker_python, self.ctl.python_fallback)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(EXTENSION_ROOT),
                                                                         os.environ.get("PYTHONPATH")])))
        done = subprocess.run([python, "-m", "lora_train", "caption", str(folder), "--check-length"],
                              capture_output=True, text=True, timeout=300, env=env)
        if done.returncode != 0:
            raise UserError((done.stderr.strip().splitlines() or ["The length check failed."])[-1])
        report = json.loads(done.stdout.strip().splitlines()[-1])
        if not report["long"]:
            return markup.message(f"Every caption fits the text encoder's {report['limit']} tokens.", "success")
        lines = [f"{entry['name']}: {entry['tokens']} tokens" for entry in report["long"][:20]]
        return markup.message(f"{len(report['long'])} caption(s) exceed {report['limit']} tokens; the text encoder "
                              "ignores what comes after (shorten them or remove tags):\n" + "\n".join(lines), "warning")

    def tick(self, data_dir: str, view: dict | None):
        state: JobState | None = self.runner.snapshot()
        key = [state.number, state.version] if state else None
        view = view or {}
        unchanged = [gr.update() for _ in range(5)]  # gallery, image, counts, backup, note
        if state is None or view.get("key") == key:
            return [gr.update()] + unchanged + [view]
        bar = markup.progress(state.status, state.step, state.total, None, None, state.its, state.eta_s, None)
        outputs = [bar] + unchanged
        outputs[5] = note = _job_note(state)
        folder = data_dir or state.settings.get("train_data_dir", "")
        if state.ended and view.get("listed") != state.number and folder:
            outputs[1:6] = self.listing(folder, note)
            view = {**view, "listed": state.number}
        return outputs + [{**view, "key": key}]


def _job_note(state: JobState) -> str:
    """The job's warnings and errors, and its summary once it is done."""
    items = list(state.messages[-5:])
    if state.status in ("done", "interrupted") and state.log:
        items.append((state.log[-1].removeprefix("done: ").split(": ", 1)[-1], "success"))
    return markup.messages(items)


def _counts_html(counts: list[tuple[str, int]], images: int) -> str:
    if not counts:
        return ""
    rows = "".join(f"<tr><td>{html.escape(tag)}</td><td>{count}</td></tr>" for tag, count in counts[:COUNTS_SHOWN])
    more = f"<p>and {len(counts) - COUNTS_SHOWN} more tags</p>" if len(counts) > COUNTS_SHOWN else ""
    return (f'<div class="lora-train-tag-counts"><p>{len(counts)} tags over {images} images</p>'
            f"<table><tr><th>tag</th><th>images</th></tr>{rows}</table>{more}</div>")
