"""Writing the trained LoRA: kohya-format file + metadata, and the WebUI card's sidecar and preview.

Names are chosen once per run (`name`, else `name_v2`, ...; epoch saves `name-000004`), never
over an existing file. The files go to `lora_output_dir` (e.g. the WebUI's models/Lora), or
output_dir when it is not set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..adapters.spec import LoraSpec
from ..config import TrainConfig
from ..data.scan import DatasetIndex
from ..kohya.state import SAVE_DTYPES, kohya_state_dict
from ..kohya.metadata import TrainingRun, build_metadata
from ..core.naming import free_lora_path
from ..core.card import sidecar, write_preview, write_sidecar
from ..kohya.write import save_lora
from ..models.base_model import BaseModel


@dataclass
class LoraWriter:
    config: TrainConfig
    base: BaseModel
    spec: LoraSpec
    index: DatasetIndex
    folder: Path
    started_at: float

    def save(self, unet, text_encoders, *, steps: int, epochs_done: int, epoch: int | None = None) -> Path:
        """Write a LoRA file of the current weights (an epoch save when `epoch` is given)."""
        config = self.config
        state = kohya_state_dict(self.base.arch, unet, text_encoders, config.save_precision)
        run = TrainingRun(
            output_name=config.output_name, base_model=str(self.base.path),
            base_model_version=self.base.base_model_version,
            modelspec_architecture=self.base.modelspec_architecture, resolution=config.resolution,
            started_at=self.started_at, finished_at=time.time(), steps=steps, num_epochs=epochs_done,
            num_train_images=self.index.num_train_images, learning_rate=config.learning_rate,
            unet_lr=config.unet_lr or config.learning_rate, text_encoder_lr=self.text_encoder_lr, seed=config.seed,
            training_comment=config.training_comment, trigger_words=config.trigger_word,
            tag_frequency=self.index.tag_frequency, dataset_dirs=self.index.dataset_dirs)
        path = free_lora_path(self.folder, config.output_name, epoch=epoch)
        return save_lora(path, state, build_metadata(self.spec, run))

    @property
    def text_encoder_lr(self) -> float | None:
        if not self.config.train_text_encoder:
            return None
        return self.config.text_encoder_lr or self.config.learning_rate

    def write_card(self, lora_path: Path, preview: Image.Image | None) -> None:
        """The sidecar `<name>.json` (trigger words, preferred weight) and `<name>.preview.png`."""
        card = sidecar(sd_version=self.base.sd_version, activation_text=self.config.trigger_word,
                       preferred_weight=self.config.preferred_weight,
                       description=f"Trained with lora_train on {self.base.name}.",
                       notes=self.config.training_comment)
        write_sidecar(lora_path, card)
        if preview is not None:
            write_preview(lora_path, preview)


def save_sizes(config: TrainConfig, params: list[torch.nn.Parameter], output_dir: Path,
               lora_dir: Path) -> dict[Path, int]:
    """Bytes the job writes at least: one LoRA file, and a checkpoint (weights, two optimizer moments) if any."""
    count = sum(param.numel() for param in params)
    needs = {output_dir: 12 * count if config.save_steps else 0}
    needs[lora_dir] = needs.get(lora_dir, 0) + count * SAVE_DTYPES[config.save_precision].itemsize
    return needs
