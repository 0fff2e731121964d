"""The validation loss of a run, its best point, keep_best and early stop.

The image engines' loss (`ImageValidation`) is the mean over the held-out images of the objective's loss
at a fixed spread of noise levels (`FIXED_POINTS` per image: the UNet's timesteps, the DiT's sigmas), with
noise from a generator seeded by the seed and the image alone. So the value is the same for the same LoRA
computed twice and comparable from point to point and run to run. It runs in eval mode and no_grad, and
forks torch's random state, so training draws what it would have drawn without it.

`Tracker` is shared with the text engine: it sends each value as an `eval` event (kept in the loss history
that checkpoints save, so a resumed run knows its curve and its best point), remembers the best weights for
keep_best (saved in checkpoints too) and says when early stop is due.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data.dataset import ImageDataset, collate
from .reporting import Reporter
from .resume_state import TrainingState

FIXED_POINTS = 4  # noise levels per held-out image: (k + 0.5) / FIXED_POINTS of the noise range


def fixed_fractions(count: int = FIXED_POINTS) -> list[float]:
    """The noise levels of the validation loss, as fractions of the range: evenly spread, ends excluded."""
    return [(k + 0.5) / count for k in range(count)]


class ImageValidation:
    """The validation loss of the image engines: `runner.fixed_loss(batch, fractions, generator)` per image (a batch
    of its copies, one per noise level), over `dataset` (latents and text outputs cached like the training ones)."""

    def __init__(self, dataset: ImageDataset, runner, modules: dict[str, torch.nn.Module], seed: int):
        self.dataset, self.runner, self.modules, self.seed = dataset, runner, modules, seed

    def __call__(self) -> float:
        device = self.runner.device
        modes = {name: module.training for name, module in self.modules.items()}
        total = 0.0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            for module in self.modules.values():
                module.eval()
            try:
                for index in range(len(self.dataset)):
                    batch = collate([self.dataset[index]] * FIXED_POINTS)  # one copy per noise level
                    generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)  # this image's noise
                    with self.runner.precision.autocast():
                        total += float(self.runner.fixed_loss(batch, fixed_fractions(), generator))
            finally:
                for name, module in self.modules.items():
                    module.train(modes[name])
        return total / len(self.dataset)


@dataclass(frozen=True)
class Best:
    loss: float
    step: int
    epoch: int


class Tracker:
    """The evaluations of a run: each reported, the best one found in the loss history, its weights kept for
    keep_best (in `state.best_weights`), and whether `patience` evaluations passed without a better one."""

    def __init__(self, compute: Callable[[], float], report: Reporter, state: TrainingState, steps_per_epoch: int,
                 keep_best: bool, patience: int, perplexity: bool = False):
        self.compute, self.report, self.state = compute, report, state
        self.steps_per_epoch, self.keep_best, self.patience, self.perplexity = (steps_per_epoch, keep_best, patience,
                                                                                perplexity)

    def evaluate(self, step: int, epoch: int) -> None:
        loss = self.compute()
        self.report.eval(step, epoch, loss, math.exp(min(loss, 50.0)) if self.perplexity else None)
        best = self.best()
        if self.keep_best and best is not None and best.step == step:
            self.state.remember_best()

    def best(self) -> Best | None:
        """The first evaluation with the lowest loss so far."""
        points = self.report.history.eval_losses
        if not points:
            return None
        step, loss = min(points, key=lambda point: point[1])
        return Best(loss, step, math.ceil(step / self.steps_per_epoch))

    def evaluations_since_best(self) -> int:
        best = self.best()
        return 0 if best is None else sum(1 for step, _ in self.report.history.eval_losses if step > best.step)

    @property
    def should_stop(self) -> bool:
        """Early stop is due: `patience` evaluations in a row without a lower loss."""
        return bool(self.patience) and self.evaluations_since_best() >= self.patience

    def early_stop_message(self) -> str:
        best = self.best()
        return (f"Early stop: the validation loss has not improved for {self.evaluations_since_best()} evaluations "
                f"(early_stop_patience {self.patience}); the best was {best.loss:.4f} at epoch {best.epoch} "
                f"(step {best.step}).")

    def use_best(self) -> Best | None:
        """With keep_best, the best evaluation's weights put back into the model; the best point either way."""
        best = self.best()
        if self.keep_best and best is not None and self.state.best_weights is not None:
            self.state.use_best()
        return best

    def done_fields(self, best: Best | None, early_stopped: bool, what: str, file: str | None = None
                    ) -> tuple[dict, str]:
        """The `done` event's fields about the best point, and its sentence (none without evaluations)."""
        if best is None:
            return {}, ""
        kept = self.keep_best and self.state.best_weights is not None
        text = (f" Best validation loss {best.loss:.4f} at epoch {best.epoch} (step {best.step})"
                + (f", {file}" if file else "") + (f"; saved as the final {what} (keep_best)." if kept else ".")
                + (f" The run stopped early: no improvement for {self.patience} evaluations." if early_stopped else ""))
        return {"best_epoch": best.epoch, "best_step": best.step, "best_eval_loss": round(best.loss, 6),
                "best_file": file, "kept_best": kept, "early_stopped": early_stopped}, text
