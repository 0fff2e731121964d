"""Where a run's progress goes: events to the front end, scalars and images to TensorBoard, sample PNGs.

Only the main process reports; the others get a Reporter that drops everything. A message for
the user has one way out: `say(text, level)` (a `log` event), which helpers receive as a `Say`.
The losses reported are kept as the run's `history` (checkpoints save it); a resumed run's `start`
event carries it, so the tab's chart shows the whole curve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from ..core.events import Fanout, make_event
from ..core.loss_history import LossHistory
from .meter import Rates


class Say(Protocol):
    def __call__(self, text: str, level: str = "info") -> None: ...


class Reporter:
    def __init__(self, emit: Fanout, output_dir: Path | None, tensorboard: bool):
        self.emit = emit
        self.samples_dir = output_dir / "samples" if output_dir else None
        self.writer = None
        self.history = LossHistory()
        if tensorboard and output_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output_dir / "logs"))

    def say(self, text: str, level: str = "info") -> None:
        self.emit(make_event("log", message=text, level=level))

    def event(self, type_: str, **fields) -> None:
        """Any other progress event (start, save, done)."""
        self.emit(make_event(type_, **fields))

    def start(self, step: int, total: int, epoch: int, epochs: int, path: Path, message: str) -> None:
        """The `start` event; after a resume, with the curve so far (`losses`, `eval_losses`)."""
        curve = {key: points for key, points in self.history.fields().items() if points}
        self.emit(make_event("start", step=step, total=total, epoch=epoch, epochs=epochs, path=str(path),
                             message=message, **curve))

    def step(self, step: int, total: int, epoch: int, epochs: int, loss: float, rates: Rates,
             param_groups: list[dict]) -> None:
        self.emit(make_event("step", step=step, total=total, epoch=epoch, epochs=epochs, loss=round(loss, 6),
                             loss_avg=round(rates.loss_avg, 6), lr=param_groups[0]["lr"], its=rates.its,
                             eta_s=rates.eta_s))
        self.history.add(step, round(loss, 6))
        if self.writer is not None:
            self.writer.add_scalar("loss/step", loss, step)
            self.writer.add_scalar("loss/average", rates.loss_avg, step)
            for group in param_groups:
                self.writer.add_scalar(f"lr/{group['name']}", group["lr"], step)

    def epoch_done(self, step: int, total: int, epoch: int, epochs: int, loss_avg: float) -> None:
        self.emit(make_event("epoch", step=step, total=total, epoch=epoch, epochs=epochs, loss_avg=round(loss_avg, 6)))

    def eval(self, step: int, epoch: int, loss: float, perplexity: float | None = None) -> None:
        """The loss on the held-out images or rows (text runs: with its perplexity)."""
        text = f"validation loss {loss:.4f}" + (f", perplexity {perplexity:.2f}" if perplexity is not None else "")
        self.emit(make_event("eval", step=step, epoch=epoch, eval_loss=round(loss, 6),
                             perplexity=round(perplexity, 4) if perplexity is not None else None,
                             message=f"{text} (epoch {epoch}, step {step})"))
        self.history.add_eval(step, round(loss, 6))
        if self.writer is not None:
            self.writer.add_scalar("eval/loss", loss, step)
            if perplexity is not None:
                self.writer.add_scalar("eval/perplexity", perplexity, step)

    def stopped(self, step: int, total: int, path, what: str) -> None:
        """The `done` event of a run ended by a stop request, after `what` (the LoRA, the adapter) was saved."""
        self.emit(make_event("done", step=step, total=total, path=str(path), interrupted=True,
                             message=f"Stopped at step {step}; the {what} trained so far is saved. Resume continues "
                                     "from here."))

    def samples(self, images: list[Image.Image], step: int, label: str) -> None:
        """samples/<label>_<i>.png, a `sample` event each, and TensorBoard images."""
        if self.samples_dir is None:
            return
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            path = self.samples_dir / f"{label}_{i:02d}.png"
            image.save(path)
            self.emit(make_event("sample", step=step, path=str(path)))
            if self.writer is not None:
                self.writer.add_image(f"sample/{i}", np.asarray(image), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def peak_vram_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
