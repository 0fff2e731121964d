"""The one wiring of a dataset from the config's data keys: scan (images and their captions),
then the aspect-ratio bucket plan.

The trainer builds its torch Dataset on top of this; the WebUI tab's preview runs exactly this
(it needs PIL and numpy only, no torch) so it shows the trainer's own counts and warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lora_train.data.buckets import BucketPlan, BucketSettings, plan_buckets
from lora_train.data.scan import DatasetIndex, scan_dataset


@dataclass(frozen=True)
class DataSettings:
    """The config keys that say what the dataset is and how it is bucketed."""

    train_data_dir: str | None
    metadata_path: str | None
    caption_extension: str
    trigger_word: str
    repeats: int
    buckets: BucketSettings

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "DataSettings":
        """From config values by key name (a TrainConfig's `vars()`, or the tab's form)."""
        buckets = BucketSettings(int(values["resolution"]), bool(values["enable_bucket"]),
                                 int(values["min_bucket_reso"]), int(values["max_bucket_reso"]),
                                 int(values["bucket_reso_steps"]), bool(values["bucket_no_upscale"]))
        return cls(values["train_data_dir"], values.get("metadata_path"), values["caption_extension"],
                   values["trigger_word"], int(values["repeats"]), buckets)


@dataclass
class PlannedDataset:
    index: DatasetIndex  # the images, their captions and repeats
    plan: BucketPlan  # each image's bucket

    @property
    def warnings(self) -> list[str]:
        return self.index.warnings + self.plan.warnings


def plan_dataset(settings: DataSettings) -> PlannedDataset:
    """Scan the dataset and plan its buckets; a UserError when nothing in it can be trained on."""
    index = scan_dataset(settings.train_data_dir, settings.metadata_path,
                         caption_extension=settings.caption_extension, trigger_word=settings.trigger_word,
                         repeats=settings.repeats)
    plan = plan_buckets([record.size for record in index.records], [record.name for record in index.records],
                        settings.buckets)
    return PlannedDataset(index, plan)
