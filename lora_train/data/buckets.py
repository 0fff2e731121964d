"""Aspect-ratio buckets, computed as kohya's sd-scripts computes them.

The buckets are sizes of area <= resolution^2 whose sides are multiples of `bucket_reso_steps`
between `min_bucket_reso` and `max_bucket_reso` (kohya's `make_bucket_resolutions`). Each image
goes to the bucket of closest aspect ratio and is resized to cover it (kohya's `select_bucket`).
With `bucket_no_upscale` an image gets a bucket of its own shape, never larger than itself
(only shrunk to area resolution^2 when bigger). Without bucketing every image goes to
resolution x resolution. An `Assignment` holds the bucket and the size the image is resized to
before cropping; images that get enlarged are reported in `BucketPlan.warnings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from lora_train.data.messages import name_files
from lora_train.core.errors import UserError

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class BucketSettings:
    resolution: int
    enable_bucket: bool = True
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False


@dataclass(frozen=True)
class Assignment:
    bucket: Size  # the training size (width, height)
    resized: Size  # the image is resized to this (covering the bucket), then cropped to the bucket


@dataclass
class BucketPlan:
    assignments: list[Assignment]  # one per image
    buckets: list[Size]  # the buckets in use, sorted
    bucket_ids: list[int]  # one per image: its bucket's index in `buckets`
    warnings: list[str]


def bucket_resolutions(settings: BucketSettings) -> list[Size]:
    """The predefined buckets, sorted (kohya's make_bucket_resolutions)."""
    _check(settings)
    step, area = settings.bucket_reso_steps, settings.resolution ** 2
    if not settings.enable_bucket:
        return [(settings.resolution, settings.resolution)]
    side = int(math.sqrt(area) // step) * step
    sizes = {(side, side)}
    for width in range(settings.min_bucket_reso, settings.max_bucket_reso + 1, step):
        height = min(settings.max_bucket_reso, int((area // width) // step) * step)
        if height >= settings.min_bucket_reso:
            sizes |= {(width, height), (height, width)}
    return sorted(sizes)


def assign_bucket(size: Size, settings: BucketSettings, resolutions: Sequence[Size]) -> Assignment:
    """The bucket of one image of `size` (kohya's select_bucket); `resolutions` from bucket_resolutions."""
    if settings.enable_bucket and settings.bucket_no_upscale:
        return _own_bucket(size, settings)
    width, height = size
    if size in resolutions:
        return Assignment(size, size)
    aspect = width / height
    bucket = min(resolutions, key=lambda r: abs(r[0] / r[1] - aspect))
    return Assignment(bucket, _cover(size, bucket))


def plan_buckets(sizes: Sequence[Size], names: Sequence[str], settings: BucketSettings) -> BucketPlan:
    """Buckets for all images; `names` name them in the warnings."""
    resolutions = bucket_resolutions(settings)
    assignments = [assign_bucket(size, settings, resolutions) for size in sizes]
    buckets = sorted({a.bucket for a in assignments})
    ids = {bucket: i for i, bucket in enumerate(buckets)}
    enlarged = [f"{name} ({w}x{h} -> {a.resized[0]}x{a.resized[1]})"
                for name, (w, h), a in zip(names, sizes, assignments) if a.resized[0] > w]
    warnings = [f"{name_files(enlarged)}: smaller than the training size, so enlarged (softer results): use "
                f"larger images, or set bucket_no_upscale to train them at their own size"] if enlarged else []
    return BucketPlan(assignments, buckets, [ids[a.bucket] for a in assignments], warnings)


def _check(settings: BucketSettings) -> None:
    if not settings.enable_bucket:
        return
    if settings.min_bucket_reso > settings.max_bucket_reso:
        raise UserError(f"min_bucket_reso ({settings.min_bucket_reso}) is larger than max_bucket_reso "
                        f"({settings.max_bucket_reso}): lower min_bucket_reso or raise max_bucket_reso.")
    if settings.max_bucket_reso < settings.resolution:
        raise UserError(f"max_bucket_reso ({settings.max_bucket_reso}) is smaller than resolution "
                        f"({settings.resolution}): raise max_bucket_reso to at least the resolution.")


def _cover(size: Size, bucket: Size) -> Size:
    """The size of `size` scaled so that it just covers `bucket` (kohya's rounding)."""
    width, height = size
    scale = bucket[1] / height if width / height > bucket[0] / bucket[1] else bucket[0] / width
    return int(width * scale + 0.5), int(height * scale + 0.5)


def _own_bucket(size: Size, settings: BucketSettings) -> Assignment:
    """kohya's no-upscale bucket: the image (shrunk to area resolution^2 if larger) cut down to the step."""
    width, height = size
    step, max_area = settings.bucket_reso_steps, settings.resolution ** 2
    resized = size
    if width * height > max_area:
        aspect = width / height
        by_width = _round_to(math.sqrt(max_area * aspect), step)
        by_height = _round_to(max_area / math.sqrt(max_area * aspect), step)
        if abs(by_width / _round_to(by_width / aspect, step) - aspect) < \
                abs(_round_to(by_height * aspect, step) / by_height - aspect):
            resized = (by_width, int(by_width / aspect + 0.5))
        else:
            resized = (int(by_height * aspect + 0.5), by_height)
    # An image smaller than one step on a side still needs a bucket of one step there.
    bucket = (max(step, resized[0] - resized[0] % step), max(step, resized[1] - resized[1] % step))
    if bucket[0] > resized[0] or bucket[1] > resized[1]:
        resized = _cover(size, bucket)
    return Assignment(bucket, resized)


def _round_to(value: float, step: int) -> int:
    """kohya's round_to_steps, but never 0 (kohya divides by zero on extremely thin images)."""
    rounded = int(value + 0.5)
    return max(step, rounded - rounded % step)
