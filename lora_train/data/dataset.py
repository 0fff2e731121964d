"""The torch Dataset the training loop reads, and its collate function.

Wiring: `plan.plan_dataset` scans the data and plans the buckets (the one place that reads the
config's data keys); `train/image_data.py` builds this Dataset, the caches and the sampler from it.

An item is a dict: `index`, `caption` (processed: trigger word, shuffle, dropout), `pixel_values`
(3, H, W) in [-1, 1] or `latents` when cached, `original_size`, `crop_top_left`, `target_size`
(SDXL conditioning), and `text_encoder_outputs` when those are cached. The random choices of an
item (caption shuffle and dropout, crop, flip) come from its `SampleKey.seed`, so they are the
same whichever worker loads it and whenever a run is resumed. `images_decoded` counts decodes
in this process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from lora_train.data.buckets import BucketPlan
from lora_train.data.cache import TensorCache, Tensors, cache_key, file_digest
from lora_train.data.captions import CaptionOptions, process_caption, with_trigger
from lora_train.data.images import load_rgb
from lora_train.data.sampler import SampleKey
from lora_train.data.scan import ImageRecord
from lora_train.data.transforms import TRANSFORM_VERSION, prepare_image, size_conditioning
from lora_train.core.errors import UserError

_SIZE_FIELDS = ("original_size", "crop_top_left", "target_size")


@dataclass(frozen=True)
class ItemOptions:
    captions: CaptionOptions = field(default_factory=CaptionOptions)
    random_crop: bool = False
    flip_aug: bool = False


@dataclass(frozen=True)
class _Cached:
    cache: TensorCache
    keys: list[str]  # one per image


class ImageDataset(Dataset):
    """Images of a scan, placed in their buckets; index with an int or a `SampleKey`."""

    def __init__(self, records: Sequence[ImageRecord], plan: BucketPlan, options: ItemOptions) -> None:
        self.records, self.plan, self.options = list(records), plan, options
        self.images_decoded = 0
        self._latents: _Cached | None = None
        self._text: _Cached | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def latents_cached(self) -> bool:
        """Items carry latents: nothing encodes images during training."""
        return self._latents is not None

    @property
    def text_cached(self) -> bool:
        """Items carry text-encoder outputs: nothing encodes captions during training."""
        return self._text is not None

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = key if isinstance(key, SampleKey) else SampleKey(key, key)
        rng = random.Random(seed)
        record, assignment = self.records[index], self.plan.assignments[index]
        item: dict[str, Any] = {"index": index, "caption": process_caption(record.caption, self.options.captions, rng)}
        if self._latents is not None:
            item["latents"] = self._latents.cache.get(self._latents.keys[index])["latents"]
            conditioning = size_conditioning(record.size, assignment.bucket)
        else:
            prepared = prepare_image(self._decode(index), assignment, random_crop=self.options.random_crop,
                                     flip=self.options.flip_aug, rng=rng)
            item["pixel_values"] = prepared.pixel_values
            conditioning = prepared.conditioning
        if self._text is not None:
            item["text_encoder_outputs"] = self._text.cache.get(self._text.keys[index])
        item.update({name: getattr(conditioning, name) for name in _SIZE_FIELDS})
        return item

    def cache_latents(self, encode: Callable[[torch.Tensor], torch.Tensor], encoder_id: str, cache: TensorCache,
                      batch_size: int = 1) -> None:
        """Encode every image once (centre crop, no flip); items then carry `latents`, and no image is decoded.

        `encode(pixel_values (B, 3, H, W) in [-1, 1]) -> latents (B, C, h, w)`; `encoder_id` names the
        VAE (and anything else that changes its output, such as the scaling factor).
        """
        if self.options.random_crop or self.options.flip_aug:
            raise UserError("cache_latents stores each image centre-cropped and unflipped, so it cannot be used "
                            "with crop: random or flip_aug: turn cache_latents off, or use crop: center without "
                            "flip_aug.")
        keys = [cache_key(kind="latents", version=TRANSFORM_VERSION, image=file_digest(record.path),
                          bucket=assignment.bucket, resized=assignment.resized, crop="center", flip=False,
                          encoder=encoder_id)
                for record, assignment in zip(self.records, self.plan.assignments)]
        for bucket in range(len(self.plan.buckets)):
            indices = [i for i, b in enumerate(self.plan.bucket_ids) if b == bucket]
            cache.fill([keys[i] for i in indices], indices, partial(self._encode_images, encode), batch_size)
        self._latents = _Cached(cache, keys)

    def cache_text_encoder_outputs(self, encode: Callable[[list[str]], Tensors], encoder_id: str,
                                   cache: TensorCache, batch_size: int = 8) -> None:
        """Encode every caption once; items then carry `text_encoder_outputs` (whatever `encode` returns).

        `encode(captions) -> {name: tensor with the batch first}`; `encoder_id` names the text encoder(s).
        """
        options = self.options.captions
        if options.shuffle or options.dropout_rate > 0:
            raise UserError("cache_text_encoder_outputs needs fixed captions: turn shuffle_caption off and set "
                            "caption_dropout_rate to 0, or turn cache_text_encoder_outputs off.")
        captions = [with_trigger(record.caption, options.trigger_word) for record in self.records]
        keys = [cache_key(kind="text", caption=caption, encoder=encoder_id) for caption in captions]
        cache.fill(keys, captions, encode, batch_size)
        self._text = _Cached(cache, keys)

    def _decode(self, index: int) -> Image.Image:
        record = self.records[index]
        self.images_decoded += 1
        return load_rgb(record.path, record.orientation)

    def _encode_images(self, encode: Callable[[torch.Tensor], torch.Tensor], indices: list[int]) -> Tensors:
        pixels = [prepare_image(self._decode(i), self.plan.assignments[i], random_crop=False, flip=False,
                                rng=random.Random(i)).pixel_values for i in indices]
        return {"latents": encode(torch.stack(pixels))}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items of one bucket into a batch."""
    first = items[0]
    batch: dict[str, Any] = {"index": torch.tensor([item["index"] for item in items]),
                             "caption": [item["caption"] for item in items]}
    for name in ("pixel_values", "latents"):
        if name in first:
            batch[name] = torch.stack([item[name] for item in items])
    for name in _SIZE_FIELDS:
        batch[name] = torch.tensor([item[name] for item in items], dtype=torch.long)
    if "text_encoder_outputs" in first:
        batch["text_encoder_outputs"] = {name: torch.stack([item["text_encoder_outputs"][name] for item in items])
                                         for name in first["text_encoder_outputs"]}
    return batch
