"""The tab's Caption section: caption the dataset folder in the worker, then review and edit the captions.

Captioning runs as `python -m lora_train caption ... --events jsonl` in the worker (never in the
WebUI process), through a job runner of its own with the same hooks as training (the WebUI's model
leaves VRAM while a captioner runs and comes back after). Editing one caption, adding / removing /
replacing a tag across the folder, tag counts and restoring a backup are plain file work
(`caption.edit`, `caption.writer`), done here; every changed caption is backed up first. The
75-token check needs CLIP's tokenizer, so it asks the worker (`caption DIR --check-length`).
The once-a-second update sends the listing (`caption_listing`) only after a captioning job, or when the
listed folder changed: a backup chosen in the list stays chosen, and notes stay until something happens.
A click on a thumbnail picks that image for editing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr

from ...caption.edit import bulk_edit, read_captions, save_caption
from ...caption.methods import DEFAULT_MODELS, METHODS, SUGGESTED_MODELS
from ...caption.model_source import is_repo_id
from ...caption.writer import MODES, restore_backup
from ...core.errors import UserError
from ..kit import compat, job_view, markup
from ..worker.jobs import CAPTIONING
from ..worker.launch import resolve_worker_python, run_once
from ..worker.runner import JobRunner, JobSpec, JobState
from . import caption_listing
from .controller import HostHooks, TabController


@dataclass
class CaptionSpec(JobSpec):
    """A captioning job: the worker runs `caption` with these arguments instead of `train`."""

    caption_arguments: list[str] = field(default_factory=list)

    def arguments(self) -> list[str]:
        return ["caption", *self.caption_arguments, "--events", "jsonl", "--stop-file", str(self.stop_file)]


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
            c["page"] = compat.page_memory()

    def wire(self, blocks: gr.Blocks, data_dir, trigger) -> None:
        from ..kit.widgets import guarded

        c = self.c
        listing = [c["gallery"], c["image"], c["counts"], c["backup"]]
        page = c["page"]
        run_inputs = [data_dir, trigger] + [c[k] for k in ("method", "model", "mode", "general", "character",
                                                            "prompt", "vocabulary")]
        c["run"].click(guarded(self.start, 1, 0), inputs=run_inputs, outputs=[c["note"]])
        c["stop"].click(guarded(self.interrupt, 1, 0), outputs=[c["note"]])
        c["method"].change(guarded(self.method_changed, 2, 1), inputs=[c["method"]], outputs=[c["model"], c["note"]])
        c["load"].click(guarded(self.listing, 5, 4), inputs=[data_dir, page], outputs=listing + [c["note"]])
        c["gallery"].select(guarded(self.pick, 3, 2), inputs=[page], outputs=[c["image"], c["text"], c["note"]])
        c["image"].change(guarded(self.caption_of, 2, 1), inputs=[data_dir, c["image"]],
                          outputs=[c["text"], c["note"]])
        c["save"].click(guarded(self.save, 5, 4), inputs=[data_dir, page, c["image"], c["text"]],
                        outputs=listing + [c["note"]])
        for action in ("add", "remove", "replace"):
            c[action].click(guarded(getattr(self, f"bulk_{action}"), 5, 4),
                            inputs=[data_dir, page, c["tag"], c["replacement"]], outputs=listing + [c["note"]])
        c["restore"].click(guarded(self.restore, 5, 4), inputs=[data_dir, page, c["backup"]],
                           outputs=listing + [c["note"]])
        c["check"].click(guarded(self.check_length, 1, 0), inputs=[data_dir], outputs=[c["note"]])
        compat.every(blocks, 1.0, guarded(self.tick, 6, 5), inputs=[page], outputs=[c["progress"]] + listing +
                     [c["note"]])

    # --- actions ------------------------------------------------------------------------------
    def method_changed(self, method: str):
        return gr.update(choices=self.model_choices(method), value=DEFAULT_MODELS[method]), ""

    def start(self, data_dir: str, trigger: str, method: str, model: str, mode: str, general: float,
              character: float, prompt: str, vocabulary: str) -> str:
        self.runner.ensure_idle()  # and the other kinds of job (worker/jobs.py)
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
        spec = CaptionSpec(python, {"train_data_dir": str(folder)}, workspace, f"captioning {folder.name}",
                           caption_arguments=arguments)
        self.runner.start(spec, HostHooks(self.ctl.host))
        return markup.message(f"Captioning {folder} with the {method} ({arguments[4]}).", "info")

    def interrupt(self) -> str:
        if not self.runner.busy():
            return markup.message(self.runner.stop(), "info")  # the runner's "no job is running"
        self.runner.stop()
        return markup.message("Stopping after the current batch; the captions written so far are kept.", "info")

    def listing(self, data_dir: str, page: dict, note: str = ""):
        return caption_listing.listing(self.folder(data_dir), page, note)

    def pick(self, page: dict, evt: gr.SelectData):
        """A click on a thumbnail: its image, chosen for editing, and its caption."""
        shown = page.get("shown", [])
        if not isinstance(evt.index, int) or not 0 <= evt.index < len(shown):
            return gr.update(), gr.update(), gr.update()
        name = shown[evt.index]
        caption = next((item.caption for item in read_captions(Path(page["folder"])) if item.name == name), "")
        return gr.update(value=name), caption, ""

    def caption_of(self, data_dir: str, name: str | None):
        if not name:
            return gr.update(), gr.update()
        folder = self.folder(data_dir)
        caption = next((item.caption for item in read_captions(folder) if item.name == name), "")
        return caption, gr.update()

    def save(self, data_dir: str, page: dict, name: str | None, text: str):
        if not name:
            raise UserError("Choose the image whose caption to save.")
        result = save_caption(self.folder(data_dir), name, text or "")
        return self._after_edit(data_dir, page, result, f"Saved the caption of {name}")

    def bulk_add(self, data_dir: str, page: dict, tag: str, replacement: str):
        return self._after_edit(data_dir, page, bulk_edit(self.folder(data_dir), "add", tag),
                                f"Added {tag.strip()!r}")

    def bulk_remove(self, data_dir: str, page: dict, tag: str, replacement: str):
        return self._after_edit(data_dir, page, bulk_edit(self.folder(data_dir), "remove", tag),
                                f"Removed {tag.strip()!r}")

    def bulk_replace(self, data_dir: str, page: dict, tag: str, replacement: str):
        return self._after_edit(data_dir, page, bulk_edit(self.folder(data_dir), "replace", tag, replacement),
                                f"Replaced {tag.strip()!r} with {replacement.strip()!r}")

    def _after_edit(self, data_dir: str, page: dict, result, what: str):
        if not result.changed:
            return self.listing(data_dir, page, markup.message(f"{what}: no caption needed a change.", "info"))
        backup = f"; the previous versions are backup {result.backup_dir.name}" if result.backup_dir else ""
        return self.listing(data_dir, page, markup.message(
            f"{what}: {len(result.changed)} caption(s) changed{backup}.", "success"))

    def restore(self, data_dir: str, page: dict, name: str | None):
        if not name:
            raise UserError("Choose a backup to restore (press Load captions to list them).")
        restored, previous = restore_backup(self.folder(data_dir), name, datetime.now())
        saved = f"; the captions it replaced are now backup {previous.name}" if previous else ""
        note = (markup.message(f"Restored backup {name}: {len(restored)} caption(s) put back{saved}.", "success")
                if restored else markup.message(f"Backup {name}: every caption already matches it.", "info"))
        return self.listing(data_dir, page, note)

    def check_length(self, data_dir: str) -> str:
        folder = self.folder(data_dir)
        settings = self.ctl.host.settings()
        python = resolve_worker_python(settings.worker_python, self.ctl.python_fallback)
        output = run_once(python, ["caption", str(folder), "--check-length"], "length check", timeout=300)
        report = json.loads(output.strip().splitlines()[-1])
        if not report["long"]:
            return markup.message(f"Every caption fits the text encoder's {report['limit']} tokens.", "success")
        lines = [f"{entry['name']}: {entry['tokens']} tokens" for entry in report["long"][:20]]
        return markup.message(f"{len(report['long'])} caption(s) exceed {report['limit']} tokens; the text encoder "
                              "ignores what comes after (shorten them or remove tags):\n" + "\n".join(lines), "warning")

    def tick(self, page: dict):
        """The job's progress and note when they changed; the listing after a job, or when the folder changed."""
        state: JobState | None = self.runner.snapshot()
        outputs = [gr.update() for _ in range(6)]  # progress, gallery, image, counts, backup, note
        if job_view.job_changed(page, state):
            outputs[0] = markup.progress(state.status, state.step, state.total, None, None, state.its, state.eta_s,
                                         None)
            outputs[5] = markup.messages(state.messages[-5:] + ([(state.summary, "success")] if state.status in
                                                                ("done", "interrupted") and state.summary else []))
        if state is not None and state.ended and page.get("listed") != state.number:
            page["listed"] = state.number  # the captions it wrote, while its folder is there
            if Path(state.settings["train_data_dir"]).is_dir():
                outputs[1:6] = self.listing(state.settings["train_data_dir"], page, outputs[5])
        elif caption_listing.changed(page):  # edited elsewhere, or by the running job
            outputs[1:5] = caption_listing.listing(Path(page["folder"]), page, None)[:4]
        return outputs
