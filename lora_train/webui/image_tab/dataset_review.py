"""A look at the dataset before training, with the engine's own scan: counts, warnings, previews.

`lora_train.data.plan` needs only PIL and numpy (no torch), so the tab runs exactly the
wiring and checks the trainer will run (unreadable or huge images, missing,
empty or mis-encoded captions, images enlarged to the training size) and shows the same
messages before a job starts, then the dataset doctor's findings (`data.doctor`: duplicates, trigger word,
small or oddly shaped images, long captions, shared tags, repeat balance), computed when first asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from PIL import Image

from ...data.doctor import Finding, examine_dataset
from ...data.images import load_rgb
from ...data.plan import DataSettings, PlannedDataset, plan_dataset
from ...data.scan import DatasetIndex

THUMBNAIL_SIZE = 192
GALLERY_LIMIT = 48


@dataclass
class DatasetReview:
    planned: PlannedDataset
    settings: DataSettings

    @property
    def index(self) -> DatasetIndex:
        return self.planned.index

    @property
    def buckets(self) -> int:
        return len(self.planned.plan.buckets)

    @cached_property
    def findings(self) -> list[Finding]:
        return examine_dataset(self.planned, self.settings)

    @property
    def warnings(self) -> list[str]:
        """The scan's and the bucket plan's warnings, then the doctor's findings."""
        return self.planned.warnings + [finding.message for finding in self.findings]

    def summary(self, folder: Path) -> str:
        captioned = sum(1 for record in self.index.records if record.caption)
        return (f"{self.index.num_images} images ({captioned} with a caption), {self.index.num_train_images} image "
                f"views per epoch, {self.buckets} bucket size(s), in {folder}")

    def gallery(self, limit: int = GALLERY_LIMIT) -> list[tuple[Image.Image, str]]:
        """Small previews with their captions, for a gr.Gallery (PIL images: no file serving needed)."""
        items = []
        for record in self.index.records[:limit]:
            try:
                image = load_rgb(record.path, record.orientation)
            except (OSError, ValueError):
                continue
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            items.append((image, f"{record.name}: {record.caption or '(no caption: the trigger word)'}"[:300]))
        return items


def review_dataset(values: dict[str, Any]) -> DatasetReview:
    """Scan the dataset of a config (`train_data_dir`, `metadata_path` and the caption and bucket keys)."""
    settings = DataSettings.from_values(values)
    return DatasetReview(plan_dataset(settings), settings)
