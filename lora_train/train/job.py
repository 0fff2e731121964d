"""One training job: take the machine-wide lock and run the trainer for the config's task.

The lock is taken before the trainer's (slow) imports, so a second job is refused at once. Running out
of GPU memory before the first step (moving the model, caching latents) gets the same advice as in
the loop, which names its step.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..config import TrainConfig
from ..core.events import Fanout
from .faults import out_of_memory_message
from ..core.lock import TrainingLock
from ..text.schema import TextConfig
from .stop import StopRequest


def run_job(config: TrainConfig | TextConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    """Train the config's task: `text-generation` -> the text engine, `image` / `image-to-image` -> the image one."""
    # One lock per job: under `accelerate launch` only the first process of the machine takes it.
    first_process = os.environ.get("LOCAL_RANK", "0") == "0"
    lock = TrainingLock(description=config.output_name) if first_process else contextlib.nullcontext()
    with lock:  # before the slow imports: a refusal comes at once
        import torch

        if isinstance(config, TextConfig):
            from ..text.trainer import out_of_memory_advice, train_text_lora

            try:
                return train_text_lora(config, emit, stop)
            except torch.cuda.OutOfMemoryError:
                raise out_of_memory_advice(config) from None
        from .image_trainer import train_image_lora

        try:
            return train_image_lora(config, emit, stop)
        except torch.cuda.OutOfMemoryError:  # the loop reports its own step; this is before it
            raise out_of_memory_message(None, config.resolution, config.batch_size) from None
