"""The validation images of a run: held out of the training data (`val_split`) or a folder of their own
(`val_data_dir`, the same layout rules as train_data_dir).

The held-out images are chosen by the seed from the images sorted by name, so the same config holds out
the same images in every run and on resume. Both sets get their own bucket plan (data/buckets.py). Pure
Python (no torch): the tab's preview can show the split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from lora_train.core.errors import UserError
from lora_train.data.buckets import plan_buckets
from lora_train.data.plan import DataSettings, PlannedDataset, plan_dataset
from lora_train.data.scan import DatasetIndex, ImageRecord, scan_dataset


@dataclass(frozen=True)
class ValidationSettings:
    """The config keys that say which images are validation images."""

    val_split: float  # a fraction below 1, or a count; 0: none held out
    val_data_dir: str | None
    seed: int


def held_out_count(val_split: float, images: int) -> int:
    """How many of `images` a val_split holds out: a count from 1, else a fraction (at least one image)."""
    if not val_split:
        return 0
    return int(val_split) if val_split >= 1 else max(1, round(val_split * images))


def split_records(records: list[ImageRecord], val_split: float, seed: int) -> tuple[list[ImageRecord],
                                                                                   list[ImageRecord]]:
    """(training, validation) records; a UserError when the split leaves no image to train on."""
    count = held_out_count(val_split, len(records))
    if count >= len(records):
        raise UserError(f"val_split {val_split:g} holds out {count} of the {len(records)} images, which leaves none "
                        "to train on. Lower val_split (e.g. 0.1, or a count below the image count), or add images.")
    by_name = sorted(range(len(records)), key=lambda i: records[i].name)
    chosen = set(random.Random(seed).sample(by_name, count))
    return ([record for i, record in enumerate(records) if i not in chosen],
            [records[i] for i in sorted(chosen, key=lambda i: records[i].name)])


def _planned(index: DatasetIndex, records: list[ImageRecord], settings: DataSettings) -> PlannedDataset:
    plan = plan_buckets([r.size for r in records], [r.name for r in records], settings.buckets)
    return PlannedDataset(replace(index, records=records), plan)


def plan_with_validation(settings: DataSettings, validation: ValidationSettings
                         ) -> tuple[PlannedDataset, PlannedDataset | None]:
    """The training dataset and the validation one (None without val_split / val_data_dir)."""
    planned = plan_dataset(settings)
    if validation.val_data_dir:
        try:
            index = scan_dataset(validation.val_data_dir, caption_extension=settings.caption_extension,
                                 trigger_word=settings.trigger_word)
        except UserError as exc:
            raise UserError(f"val_data_dir: {exc}") from None
        return planned, _planned(index, [replace(r, repeats=1) for r in index.records], settings)
    if not validation.val_split:
        return planned, None
    train, held_out = split_records(planned.index.records, validation.val_split, validation.seed)
    return (_planned(planned.index, train, settings),
            _planned(planned.index, [replace(r, repeats=1) for r in held_out], settings))
