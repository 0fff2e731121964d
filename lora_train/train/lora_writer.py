"""Writing the trained LoRA: kohya-format file + metadata, and the WebUI card's sidecar and preview.

Names are chosen per save (`name`, else `name_v2`, ...; epoch saves `name-000004`), never over an
existing file but the run's own: a resumed run replaces the partial LoRA it saved when it was stopped
(the header records the run's id, core/ownership.py), so it finishes under the name it started with.
The files go to `lora_output_dir` (e.g. the WebUI's models/Lora), or output_dir when it is not set.
What the header and the card record about the run is gathered once, in `lora_writer`; each save
adds its step and epoch counts, the time, and the network as the LoRA layers hold it (a run
continued from a `pretrained_lora` may have other ranks than the config's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image

from ..adapters.layers import held_spec
from ..adapters.spec import LoraSpec
from ..config import TrainConfig
from ..core.card import sidecar, write_preview, write_sidecar
from ..core.naming import free_lora_path, preview_path, sidecar_path
from ..core.ownership import is_own
from ..data.scan import DatasetIndex
from ..kohya.metadata import TrainingRun, build_metadata
from ..kohya.state import SAVE_DTYPES, kohya_state_dict
from ..kohya.write import save_lora
from ..models.base_model import BaseModel
from .run_record import RunRecord


@dataclass
class LoraWriter:
    folder: Path
    output_name: str
    save_precision: str  # fp16 | bf16 | fp32
    base: BaseModel  # with the LoRA layers in it
    spec: LoraSpec  # as configured
    run: TrainingRun  # the run's facts; steps, epochs and finish time are filled in per save
    card: dict[str, object]  # the sidecar's content
    best: dict[str, str] = field(default_factory=dict)  # the header's record of the best evaluation (record_best)

    def save(self, *, steps: int, epochs_done: int, epoch: int | None = None) -> Path:
        """Write a LoRA file of the current weights (an epoch save when `epoch` is given): under a free name, or over
        the file this run saved under that name before it was stopped and resumed."""
        base = self.base
        network = held_spec(self.spec, [base.unet, *base.text_encoders])
        run = replace(self.run, finished_at=time.time(), steps=steps, num_epochs=epochs_done)
        path = free_lora_path(self.folder, self.output_name, epoch=epoch, run_id=run.run_id)
        return save_lora(path, self.tensors(), {**self.metadata(network, run), **self.best}, replace=path.exists())

    def own_epoch_file(self, epoch: int) -> Path | None:
        """The epoch save of `epoch` this run wrote, if it did."""
        path = free_lora_path(self.folder, self.output_name, epoch=epoch, run_id=self.run.run_id)
        return path if path.exists() else None

    def record_best(self, fields: dict) -> None:
        """The best evaluation (Tracker.done_fields) in the header of the saves to come and in the card."""
        if not fields:
            return
        self.best = {f"lora_train_{key}": str(value) for key, value in fields.items() if value is not None}
        self.card = {**self.card, "validation": {
            "best epoch": fields["best_epoch"], "best step": fields["best_step"],
            "best validation loss": fields["best_eval_loss"], "best epoch file": fields.get("best_file") or "",
            "saved as this LoRA": fields["kept_best"], "early stopped": fields["early_stopped"]}}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The file's tensors: kohya's names for the family (the DiT engine's writer fuses Flux's)."""
        base = self.base
        return kohya_state_dict(base.arch, base.unet, base.text_encoders, self.save_precision)

    def metadata(self, network: LoraSpec, run: TrainingRun) -> dict[str, str]:
        return build_metadata(network, run)

    def write_card(self, lora_path: Path, preview: Image.Image | None) -> None:
        """The sidecar `<name>.json` (trigger words, preferred weight) and `<name>.preview.png`. A resumed run keeps
        the sidecar its partial save wrote (the same card, or the user's edits of it), and replaces its own
        preview, not one the user chose."""
        if not sidecar_path(lora_path).exists():
            write_sidecar(lora_path, self.card)
        shown = preview_path(lora_path)
        if preview is not None and (not shown.exists() or is_own(shown, self.run.run_id)):
            write_preview(lora_path, preview, self.run.run_id)


def lora_writer(config: TrainConfig, base: BaseModel, spec: LoraSpec, index: DatasetIndex, folder: Path,
                record: RunRecord, writer: type[LoraWriter] = LoraWriter) -> LoraWriter:
    """The writer of this run's LoRA files, with what their header and card record taken from the config once."""
    lrs = config.component_lrs
    run = TrainingRun(
        output_name=config.output_name, base_model=str(base.path), family=base.arch, v_prediction=base.v_prediction,
        resolution=config.resolution, started_at=record.started_at, finished_at=record.started_at,
        run_id=record.run_id, steps=0, num_epochs=0, num_train_images=index.num_train_images,
        learning_rate=config.learning_rate, unet_lr=lrs["unet"],
        text_encoder_lr=lrs["text_encoder"] if config.train_text_encoder else None, seed=config.seed,
        training_comment=config.training_comment, trigger_words=config.trigger_word,
        tag_frequency=index.tag_frequency, dataset_dirs=index.dataset_dirs)
    card = sidecar(sd_version=base.sd_version, activation_text=config.trigger_word,
                   preferred_weight=config.preferred_weight, description=f"Trained with lora_train on {base.name}.",
                   notes=config.training_comment)
    return writer(folder, config.output_name, config.save_precision, base, spec, run, card)


def save_sizes(param_count: int, save_precision: str, keeps_checkpoints: bool, output_dir: Path,
               lora_dir: Path) -> dict[Path, int]:
    """Bytes the job writes at least: one LoRA file, and a checkpoint (weights, two optimizer moments) if any."""
    needs = {output_dir: 12 * param_count if keeps_checkpoints else 0}
    needs[lora_dir] = needs.get(lora_dir, 0) + param_count * SAVE_DTYPES[save_precision].itemsize
    return needs
