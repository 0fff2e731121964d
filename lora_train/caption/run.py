"""One captioning run over a folder: find the images, load the model, caption in batches, write.

Progress goes out as events (`start`, a `step` per batch with images/s and ETA, `log` for skipped
images and notes, `done` with a summary); a stop request ends the run after the current batch,
keeping what was written. In `skip` mode an image whose caption file already exists is not even
shown to the model. The model is released at the end (and the CUDA cache emptied), so a WebUI
worker does not keep it in memory.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lora_train.caption.images import find_images, load
from lora_train.caption.methods import MethodOptions, build_captioner
from lora_train.caption.writer import CaptionWriter, WriteOptions, WriteReport
from lora_train.core.errors import UserError
from lora_train.core.events import EventSink, make_event
from lora_train.data.images import UnusableImage
from lora_train.data.messages import grouped


@dataclass(frozen=True)
class CaptionJob:
    folder: Path
    methods: MethodOptions = field(default_factory=MethodOptions)
    write: WriteOptions = field(default_factory=WriteOptions)
    batch_size: int = 4
    recursive: bool = True


def run_caption(job: CaptionJob, emit: EventSink, stop: Callable[[], bool] = lambda: False) -> WriteReport:
    """Caption every image of `job.folder`; returns what was written, changed and kept."""
    if job.batch_size < 1:
        raise UserError(f"batch size must be at least 1 (got {job.batch_size}).")
    started = datetime.now()
    paths = find_images(job.folder, job.recursive)
    writer = CaptionWriter(job.folder, job.write, started)
    todo = [path for path in paths if not _keeps_existing(path, job.write)]
    writer.report.kept += [p.with_suffix(job.write.extension).relative_to(job.folder).as_posix()
                           for p in paths if p not in todo]
    emit(make_event("start", total=len(todo), message=f"Captioning {len(todo)} of {len(paths)} images in "
                                                       f"{job.folder} with the {job.methods.method}"))
    skipped: dict[str, list[str]] = {}
    if todo:
        captioner = build_captioner(job.methods, emit)
        try:
            _caption_all(todo, job, captioner, writer, emit, stop, skipped)
        finally:
            del captioner
            _release_memory()
    report = writer.finish()
    for line in grouped(skipped):
        emit(make_event("log", level="warning", message=f"Skipped {line}"))
    emit(make_event("done", message=f"{job.folder}: {_summary(report, skipped)}"))
    return report


def _caption_all(todo, job: CaptionJob, captioner, writer: CaptionWriter, emit: EventSink, stop,
                 skipped: dict[str, list[str]]) -> None:
    began = time.perf_counter()
    for start in range(0, len(todo), job.batch_size):
        batch = []
        for path in todo[start:start + job.batch_size]:
            try:
                item = load(path, job.folder)
            except UnusableImage as exc:
                skipped.setdefault(str(exc), []).append(path.relative_to(job.folder).as_posix())
                continue
            if item.note:
                emit(make_event("log", level="info", message=f"{item.name}: {item.note}"))
            batch.append(item)
        for item, caption in zip(batch, captioner(batch) if batch else []):
            writer.write(item.path, caption)
        done = min(start + job.batch_size, len(todo))
        rate = done / max(time.perf_counter() - began, 1e-9)
        emit(make_event("step", step=done, total=len(todo), unit="image", its=round(rate, 3),
                        eta_s=round((len(todo) - done) / rate, 1)))
        if stop() and done < len(todo):
            emit(make_event("log", level="warning", message=f"Stopped after {done} of {len(todo)} images; the "
                                                            "captions written so far are kept."))
            return


def _keeps_existing(image: Path, write: WriteOptions) -> bool:
    """In skip mode with only .txt output, an image whose caption file has text needs no captioning."""
    caption = image.with_suffix(write.extension)
    return (write.mode == "skip" and write.write_txt and write.metadata_csv is None and caption.is_file()
            and bool(caption.read_text(encoding="utf-8", errors="replace").strip()))


def _release_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _summary(report: WriteReport, skipped: dict[str, list[str]]) -> str:
    parts = [f"{len(report.written)} new captions written", f"{len(report.changed)} existing changed",
             f"{len(report.kept)} existing kept"]
    if skipped:
        parts.append(f"{sum(map(len, skipped.values()))} images skipped")
    if report.csv_rows:
        parts.append(f"metadata.csv written with {report.csv_rows} rows")
    text = ", ".join(parts)
    if report.backup_dir is not None:
        text += f"; the previous captions are in {report.backup_dir}"
    return text
