"""Full training state for exact resume: `output_dir/checkpoint-<output name>-<step>/` (resume_folders.py).

A checkpoint holds the LoRA parameters (safetensors), the optimizer state and which optimizer it
was (see optimizer_state.py), the LR schedule and loss scaler states, torch's and Python's random
states, where in the data the run was (the noise of a step is seeded from the step itself, so it
needs no saved state), whose run it is and its loss curve so far (run_record.py), and with keep_best the
weights of the best evaluation so far (BEST_FILE). It is written
into a temporary folder (each file fsynced) and renamed into place, so a process killed mid-save
leaves the previous checkpoint intact; a full or read-only disk is a UserError naming the folder,
and leaves no partial folder. Everything loads with `torch.load(weights_only=True)`: no pickle code
runs on resume.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import safetensors.torch
import torch
from safetensors.torch import load_file

from ..core.atomic import disk_error
from ..core.errors import UserError
from ..core.loss_history import LossHistory
from ..core.resume_folders import (BEST_FILE, FOLDER_FORM, PARAMS_FILE, STAGING_SUFFIX, STATE_FILE, resume_folder,
                                   resume_folders)
from .optimizer_state import load_optimizer_state, optimizer_kind
from .reporting import Say
from .run_record import RunRecord

@dataclass
class Progress:
    step: int  # optimizer steps done
    epoch: int  # 0-based epoch the next batch belongs to
    batch_in_epoch: int  # batches of that epoch already consumed


@dataclass(frozen=True)
class Checkpoints:
    """Where a job's checkpoints go and how many are kept."""

    output_dir: Path
    name: str  # the job's output name, in each folder's name
    keep: int  # 0: all
    seed: int  # recorded in each


def rng_snapshot() -> dict[str, Any]:
    snapshot = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        snapshot["cuda"] = torch.cuda.get_rng_state_all()
    return snapshot


def restore_rng(snapshot: dict[str, Any]) -> None:
    torch.set_rng_state(snapshot["torch"])
    random.setstate(snapshot["python"])
    if "cuda" in snapshot and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda"])


def save_checkpoint(where: Checkpoints, params: dict[str, torch.Tensor], optimizer, lr_scheduler, scaler,
                    progress: Progress, run: RunRecord, history: LossHistory,
                    best: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the job's checkpoint of this step atomically and return its path (`best`: the weights keep_best
    keeps, in a file of their own)."""
    final = resume_folder(where.output_dir, where.name, progress.step)
    staging = final.with_name(final.name + STAGING_SUFFIX)
    tensors = safetensors.torch.save({k: v.detach().contiguous().cpu() for k, v in params.items()})
    state = {"optimizer": optimizer.state_dict(), "optimizer_kind": optimizer_kind(optimizer), "lr_scheduler": lr_scheduler.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_snapshot(),
             "progress": asdict(progress), "settings": {"seed": where.seed}, "run": asdict(run),
             "history": history.fields()}
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _write_synced(staging / PARAMS_FILE, lambda handle: handle.write(tensors))
        _write_synced(staging / STATE_FILE, lambda handle: torch.save(state, handle))
        if best is not None:
            best_file = safetensors.torch.save({k: v.contiguous() for k, v in best.items()})
            _write_synced(staging / BEST_FILE, lambda handle: handle.write(best_file))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:  # a full disk, a folder made read-only: say so, leave no half checkpoint
        shutil.rmtree(staging, ignore_errors=True)
        raise disk_error(exc, final) from exc
    return final


def _write_synced(path: Path, write: Callable[[BinaryIO], object]) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(LoRA params, state) of a checkpoint folder, loaded without running pickle code."""
    try:
        params = load_file(str(path / PARAMS_FILE))
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"Checkpoint {path} holds pickled objects other than tensors, which are never loaded (they "
                        "could run code): lora_train did not write it, or it was changed. Resume from a "
                        f"{FOLDER_FORM} folder written by lora_train.") from None
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"Checkpoint {path} cannot be read ({reason}); it may be damaged. Resume from an older "
                        f"{FOLDER_FORM} folder.") from None
    return params, state


def prune_checkpoints(output_dir: str | Path, name: str, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of the job `name` (keep 0: delete none); other jobs' stay."""
    if keep <= 0:
        return
    for path in resume_folders(output_dir, name)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Resumed:
    """What a checkpoint gives the run besides the weights and optimizer: where it was, whose run, its curve."""

    progress: Progress
    run: RunRecord
    history: LossHistory


@dataclass
class TrainingState:
    """What a checkpoint holds besides the data position: the trained parameters, the optimizer,
    the learning-rate schedule and the loss scaler."""

    trained: dict[str, torch.nn.Module]
    optimizer: Any
    lr_scheduler: Any
    scaler: Any  # torch.amp.GradScaler or None
    best_weights: dict[str, torch.Tensor] | None = None  # keep_best: the trained parameters at the best evaluation

    def save(self, where: Checkpoints, progress: Progress, run: RunRecord, history: LossHistory) -> Path:
        """The job's checkpoint of this step, then all but its newest `where.keep` checkpoints deleted."""
        path = save_checkpoint(where, trainable_state(self.trained), self.optimizer, self.lr_scheduler, self.scaler,
                               progress, run, history, self.best_weights)
        prune_checkpoints(where.output_dir, where.name, where.keep)
        return path

    def restore(self, path: Path, run: RunRecord, say: Say) -> Resumed:
        """Load a checkpoint into the run, once it is checked to be this job's (run_record.py)."""
        tensors, state = load_checkpoint(path)
        resumed = run.continued(state.get("run"), path, say)
        load_trainable(self.trained, tensors, path)
        load_optimizer_state(self.optimizer, state["optimizer"], state.get("optimizer_kind"), path, say)
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        if (path / BEST_FILE).is_file():
            self.best_weights = load_file(str(path / BEST_FILE))
        return Resumed(Progress(**state["progress"]), resumed, LossHistory.from_fields(state.get("history")))


    def remember_best(self) -> None:
        """Keep a copy of the trained parameters as they are now (the best evaluation so far)."""
        current = trainable_state(self.trained)
        self.best_weights = {name: param.detach().cpu().clone() for name, param in current.items()}

    def use_best(self) -> None:
        """Put the remembered best parameters back into the trained modules."""
        load_trainable(self.trained, self.best_weights, Path("the best evaluation's weights"))


def trainable_state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every parameter that requires grad, named `<module name>.<parameter path>`."""
    return {f"{name}.{path}": param for name, module in modules.items()
            for path, param in module.named_parameters() if param.requires_grad}


def load_trainable(modules: dict[str, torch.nn.Module], tensors: dict[str, torch.Tensor], origin: Path) -> None:
    """Copy saved trainable parameters back in place; the set of names must match exactly."""
    current = trainable_state(modules)
    if set(current) != set(tensors):
        missing, extra = sorted(set(current) - set(tensors)), sorted(set(tensors) - set(current))
        raise UserError(f"Checkpoint {origin} was saved with other LoRA settings (missing {len(missing)} and "
                        f"{len(extra)} unexpected parameters, e.g. {(missing or extra)[0]}). Resume with the same "
                        "network settings (lora_rank, network_type, targets, train_unet / train_text_encoder).")
    with torch.no_grad():
        for name, param in current.items():
            if param.shape != tensors[name].shape:
                raise UserError(f"Checkpoint {origin}: {name} has shape {tuple(tensors[name].shape)}, the run has "
                                f"{tuple(param.shape)}. Resume with the same lora_rank / conv_dim.")
            param.copy_(tensors[name].to(param.device, param.dtype))
