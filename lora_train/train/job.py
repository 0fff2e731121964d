"""One training job: lock the devices it trains on and run the trainer for the config's task; an image job
runs the engine its base model's family names (`Family.engine`: the UNet engine's loop or the DiT engine's).

The lock is taken before the trainer's (slow) imports, so a second job on the same device is refused at
once. Running out of GPU memory before the first step (moving the model, caching latents) gets the same
advice as in the loop, which names its step.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..config import TrainConfig
from ..core.base_family import base_model_family
from ..core.collector import collector_paused, release_frozen
from ..core.events import Fanout
from .faults import out_of_memory_message
from ..core.lock import CPU, TrainingLock
from ..families import family_or_default
from ..text.schema import TextConfig
from .stop import StopRequest


def run_job(config: TrainConfig | TextConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    """Train the config's task: `text-generation` -> the text engine, `image` / `image-to-image` -> the image one."""
    # Under `accelerate launch` the first process of the machine locks the devices of all of them.
    first_process = os.environ.get("LOCAL_RANK", "0") == "0"
    lock = TrainingLock(job_devices(), config.output_name) if first_process else contextlib.nullcontext()
    with lock:  # before the slow imports: a refusal comes at once
        try:
            return (_train_text if isinstance(config, TextConfig) else _train_image)(config, emit, stop)
        finally:
            release_frozen()  # a process that goes on (tests, a library caller) can collect the job's objects


def _train_text(config: TextConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    import torch

    with collector_paused(collect=False):  # no collections in the imports: a second saved
        from ..text.trainer import out_of_memory_advice, train_text_lora
    try:
        return train_text_lora(config, emit, stop)
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory_advice(config) from None


def _train_image(config: TrainConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    import torch

    from ..models.lean_import import without_optional_packages

    try:
        with without_optional_packages():  # no bitsandbytes unless the 8-bit optimizer uses it: seconds saved
            with collector_paused(collect=False):  # no collections in the imports: a second saved
                build = (base_model_family(config.base_model) or family_or_default(None)).engine.load()
                from .image_trainer import train_image_lora
            return train_image_lora(config, emit, stop, build)  # the engine of the base model's family
    except torch.cuda.OutOfMemoryError:  # the loop reports its own step; this is before it
        raise out_of_memory_message(None, config.resolution, config.batch_size) from None


def job_devices() -> list[str]:
    """The devices this job's processes on this machine train on, as Accelerator places them: `cpu` when
    forced (ACCELERATE_USE_CPU) or without a GPU, else the first LOCAL_WORLD_SIZE (one per process) of the
    GPUs CUDA_VISIBLE_DEVICES shows, named as it names them (`cuda:1`, `cuda:GPU-<uuid>`)."""
    if os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes", "y", "on"):
        return [CPU]
    import torch  # cheap next to the trainer's imports

    if not torch.cuda.is_available():
        return [CPU]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = ([part.strip() for part in visible.split(",") if part.strip()] if visible is not None
           else [str(index) for index in range(torch.cuda.device_count())])
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return [f"cuda:{device}" for device in ids[:processes]] or [CPU]
