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
from ..core.errors import UserError
from ..core.events import Fanout
from .faults import out_of_memory_message
from ..core.lock import TrainingLock
from .stop import StopRequest


def run_job(config: TrainConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    if config.task_type == "text-generation":
        raise UserError("task_type text-generation (LLM LoRA) is not built yet; it comes with the LLM LoRA issue. "
                        "Use task_type: image for Stable Diffusion LoRAs.")
    # One lock per job: under `accelerate launch` only the first process of the machine takes it.
    first_process = os.environ.get("LOCAL_RANK", "0") == "0"
    lock = TrainingLock(description=config.output_name) if first_process else contextlib.nullcontext()
    with lock:  # before the slow imports: a refusal comes at once
        import torch

        from ..models.lean_import import without_optional_packages

        try:
            with without_optional_packages():  # no bitsandbytes unless the 8-bit optimizer uses it: seconds saved
                from .image_trainer import train_image_lora

                return train_image_lora(config, emit, stop)
        except torch.cuda.OutOfMemoryError:  # the loop reports its own step; this is before it
            raise out_of_memory_message(None, config.resolution, config.batch_size) from None
