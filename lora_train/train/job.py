"""One training job: take the machine-wide lock and run the trainer for the config's task."""

from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..errors import UserError
from .events import Fanout
from .lock import TrainingLock
from .stop import StopRequest


def run_job(config: TrainConfig, emit: Fanout, stop: StopRequest) -> Path | None:
    if config.task_type == "text-generation":
        raise UserError("task_type text-generation (LLM LoRA) is not built yet; it comes with the LLM LoRA issue. "
                        "Use task_type: image for Stable Diffusion LoRAs.")
    from .image_trainer import train_image_lora

    with TrainingLock(description=config.output_name):
        return train_image_lora(config, emit, stop)
