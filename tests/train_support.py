"""Running the trainer in-process on the tiny model, for the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from lora_train.config import load_config
from lora_train.core.events import Fanout
from lora_train.train.job import run_job
from lora_train.train.stop import StopRequest

DATASET = Path(__file__).resolve().parents[1] / "examples" / "tiny_dataset"

FAST = {"resolution": 64, "enable_bucket": False, "batch_size": 2, "epochs": 1, "lora_rank": 4, "lora_alpha": 4,
        "learning_rate": 1e-3, "text_encoder_lr": 1e-4, "optimizer": "adamw", "scheduler": "constant",
        "mixed_precision": "no", "sample_steps": 2, "save_precision": "fp32", "log_with": "none", "seed": 7}


def copy_dataset(folder: Path) -> Path:
    """A private copy of the bundled dataset (some runs write a cache into it)."""
    target = folder / "dataset"
    if not target.exists():
        shutil.copytree(DATASET, target)
    return target


def train(base_model: Path, output_dir: Path, *, stop_at_step: int | None = None, events: list | None = None,
          **settings):
    """Run one training job; returns (LoRA path, events). `stop_at_step` asks it to stop after that step."""
    events = [] if events is None else events
    values = {**FAST, "base_model": str(base_model), "train_data_dir": str(DATASET), "output_dir": str(output_dir),
              **settings}
    stop_file = output_dir.parent / f"{output_dir.name}.stop"
    stop_file.unlink(missing_ok=True)
    emit = Fanout(events.append)
    if stop_at_step is not None:
        emit.add(lambda e: e["type"] == "step" and e["step"] == stop_at_step and stop_file.touch())
    path = run_job(load_config(overrides=values), emit, StopRequest(stop_file))
    return path, events
