"""The epochs and steps of an image LoRA run, and its one end: `finish(interrupted)`.

Each optimizer step covers `accumulation` batches; after it come the step report, the checkpoint
and sample schedules, and the stop check (agreed across processes, so all stop at the same
step). A stop request and the end of the schedule both go through `finish`: the LoRA and its
card are written, with a checkpoint to resume from when interrupted; the card's preview is the
final sample, or the last one made before a stop. Only the main process writes files; the others
take the same steps silently.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from PIL import Image

from ..models.base_model import BaseModel
from .encoders import encoders_loaded
from .faults import check_finite_loss
from .image_data import ImageData
from .lora_writer import LoraWriter
from .meter import StepMeter
from .precision import Precision
from .reporting import Reporter, peak_vram_mb
from .resume_state import Checkpoints, Progress, TrainingState
from .run_record import RunRecord
from .sampling import SampleSettings, generate_samples
from .step import OptimizerStepper
from .stop import StopRequest
from .validation import Best, Tracker


@dataclass(frozen=True)
class Schedule:
    """How long the run is and when it saves and samples (0: never)."""

    total_steps: int
    epochs: int
    accumulation: int  # batches per optimizer step
    checkpoint_every_n_steps: int
    sample_every_n_steps: int
    save_every_n_epochs: int
    sample_every_n_epochs: int
    steps_per_epoch: int
    validate_every_n_steps: int  # 0: after every epoch (when there are validation images)


@dataclass
class ImageLoop:
    schedule: Schedule
    data: ImageData
    runner: OptimizerStepper
    state: TrainingState
    params: list[torch.nn.Parameter]
    progress: Progress
    checkpoints: Checkpoints
    record: RunRecord  # whose checkpoints and files these are
    writer: LoraWriter
    samples: SampleSettings
    base: BaseModel  # or the DiT engine's FluxBase
    precision: Precision
    accelerator: Accelerator
    report: Reporter
    stop: StopRequest
    learning_rate: float  # named in the advice when the loss diverges
    preferred_weight: float  # in the `<lora:name:weight>` tag of the final message
    generate: Callable[..., list[Image.Image]] = generate_samples  # (base, samples, device, autocast) -> images
    validation: Tracker | None = None  # the validation loss, best point and early stop (val_split / val_data_dir)

    def __post_init__(self) -> None:
        self.main = self.accelerator.is_main_process
        self.meter = StepMeter(self.schedule.total_steps, self.progress.step)
        self.last_sample: Image.Image | None = None  # the partial LoRA's preview when a stop ends the run
        self.early_stopped = False

    def run(self) -> Path | None:
        """Train to the end of the schedule or a stop request; the saved LoRA's path (None off the main process)."""
        progress, schedule = self.progress, self.schedule
        for epoch in range(progress.epoch, schedule.epochs):
            if self._train_epoch(epoch):
                return self.finish(interrupted=not self.early_stopped)
            progress.epoch, progress.batch_in_epoch = epoch + 1, 0
            self.report.epoch_done(progress.step, schedule.total_steps, epoch + 1, schedule.epochs, self.meter.loss_avg)
            if self.validation is not None and not schedule.validate_every_n_steps and self._validate(epoch + 1):
                break
            if progress.step >= schedule.total_steps:
                break
            if _every(schedule.save_every_n_epochs, epoch + 1):
                self.save_lora(epoch=epoch + 1)
            if _every(schedule.sample_every_n_epochs, epoch + 1):
                self.sample(f"epoch{epoch + 1:04d}")
        return self.finish(interrupted=False)

    def _train_epoch(self, epoch: int) -> bool:
        """The epoch's optimizer steps (after those already done); True when a stop was requested."""
        progress, schedule = self.progress, self.schedule
        batches = self.data.batches(epoch, skip=progress.batch_in_epoch)
        for chunk in iter(lambda: list(itertools.islice(batches, schedule.accumulation)), []):
            loss = self.runner.optimizer_step(progress.step + 1, chunk, self.state.optimizer, self.params)
            check_finite_loss(loss, progress.step + 1, self.precision.name, self.learning_rate)
            progress.step += 1
            progress.batch_in_epoch += len(chunk) * self.accelerator.num_processes
            self.report.step(progress.step, schedule.total_steps, epoch + 1, schedule.epochs, loss,
                             self.meter.update(progress.step, loss), self.state.optimizer.param_groups)
            self.state.lr_scheduler.step()  # after the report: it shows the rate this step used
            if _every(schedule.checkpoint_every_n_steps, progress.step):
                self.save_state()
            if _every(schedule.sample_every_n_steps, progress.step):
                self.sample(f"step{progress.step:06d}")
            if self.validation is not None and _every(schedule.validate_every_n_steps, progress.step) \
                    and self._validate(epoch + 1):
                return True
            if _any_process(self.accelerator, bool(self.stop)):
                return True
            if progress.step >= schedule.total_steps:
                break
        return False

    def _validate(self, epoch: int) -> bool:
        """The validation loss now; True (and said) when early stop is due."""
        self.validation.evaluate(self.progress.step, epoch)
        self.early_stopped = self.validation.should_stop
        if self.early_stopped:
            self.report.say(self.validation.early_stop_message())
        return self.early_stopped

    def finish(self, interrupted: bool) -> Path | None:
        """The LoRA and its card (a checkpoint too when interrupted), then `done`. The card's preview is a final
        sample, or when interrupted the last sample of the run (none if it made none). With validation the LoRA
        is the best evaluation's weights under keep_best, and its header, card and `done` name the best point."""
        step, total = self.progress.step, self.schedule.total_steps
        if interrupted:
            self.save_state()
        best = self.validation.use_best() if self.validation is not None and not interrupted else None
        fields, best_text = self.validation.done_fields(best, self.early_stopped, "LoRA",
                                                        self._epoch_file(best)) if best else ({}, "")
        self.writer.record_best(fields)
        path = self.save_lora()
        if not interrupted:
            self.sample(f"final{step:06d}")
        if not self.main:
            return path
        self.writer.write_card(path, self.last_sample)
        if interrupted:
            self.report.stopped(step, total, path, "LoRA")
        else:
            self.report.event("done", step=step, total=total, path=str(path),
                              peak_vram_mb=peak_vram_mb(self.accelerator.device), **fields,
                              message=f"Saved {path}. Use it in a prompt with <lora:{path.stem}:"
                                      f"{self.preferred_weight:g}>{best_text}")
        return path

    def _epoch_file(self, best: Best) -> str | None:
        """The name of the epoch save made at the best evaluation, if one was."""
        if best.step != min(best.epoch * self.schedule.steps_per_epoch, self.schedule.total_steps):
            return None
        path = self.writer.own_epoch_file(best.epoch) if self.main else None
        return path.name if path is not None else None

    def save_state(self) -> None:
        if self.main:
            path = self.state.save(self.checkpoints, self.progress, self.record, self.report.history)
            self.report.event("save", step=self.progress.step, path=str(path), message="checkpoint")

    def save_lora(self, epoch: int | None = None) -> Path | None:
        if not self.main:
            return None
        path = self.writer.save(steps=self.progress.step, epochs_done=self.progress.epoch, epoch=epoch)
        self.report.event("save", step=self.progress.step, epoch=epoch, path=str(path), message="LoRA")
        return path

    def sample(self, label: str) -> None:
        if not self.main or not self.samples.steps:  # sample_steps: 0 turns samples off
            return
        with encoders_loaded(self.base, self.accelerator.device, self.precision):
            images = self.generate(self.base, self.samples, self.accelerator.device, self.precision.autocast())
        self.report.samples(images, self.progress.step, label)
        self.last_sample = images[0] if images else self.last_sample


def _every(interval: int, count: int) -> bool:
    return bool(interval) and count % interval == 0


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process when it is true on one (a stop file seen by one process stops them all)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item())
