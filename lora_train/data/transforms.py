"""From a decoded image to the training tensor, plus SDXL's size conditioning.

`resize_and_crop` resizes with Lanczos so the image covers its bucket (the `Assignment` from
buckets.py) and crops it to the bucket, centred or at a random offset. `to_tensor` gives a float
CHW tensor in [-1, 1]. `size_conditioning` returns SDXL's `original_size`, `crop_top_left` and
`target_size` exactly as kohya's sd-scripts computes them: the crop offset comes from fitting
the original image *inside* the bucket (kohya's `get_crop_ltrb`, "as Stability AI's
preprocessing"), so it does not depend on where a random crop was taken; when flipped, the left
offset is mirrored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from lora_train.data.buckets import Assignment, Size

# Bump when the pixels produced for the same file and settings change: it invalidates latent caches.
TRANSFORM_VERSION = 1


@dataclass(frozen=True)
class SizeConditioning:
    original_size: tuple[int, int]  # (height, width) of the image before resizing
    crop_top_left: tuple[int, int]  # (top, left)
    target_size: tuple[int, int]  # (height, width) trained at


@dataclass(frozen=True)
class Prepared:
    pixel_values: torch.Tensor  # (3, H, W), float32 in [-1, 1]
    conditioning: SizeConditioning
    flipped: bool


def prepare_image(image: Image.Image, assignment: Assignment, *, random_crop: bool, flip: bool,
                  rng: random.Random) -> Prepared:
    """Resize, crop, maybe flip (with probability 1/2 when `flip`), and convert to a tensor."""
    cropped = resize_and_crop(image, assignment, random_crop, rng)
    flipped = flip and rng.random() < 0.5
    if flipped:
        cropped = cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return Prepared(to_tensor(cropped), size_conditioning(image.size, assignment.bucket, flipped), flipped)


def resize_and_crop(image: Image.Image, assignment: Assignment, random_crop: bool,
                    rng: random.Random) -> Image.Image:
    """The image resized to `assignment.resized` and cropped to `assignment.bucket`."""
    if image.size != assignment.resized:
        image = image.resize(assignment.resized, Image.Resampling.LANCZOS, reducing_gap=3.0)
    (width, height), (bucket_w, bucket_h) = image.size, assignment.bucket
    left = _offset(width - bucket_w, random_crop, rng)
    top = _offset(height - bucket_h, random_crop, rng)
    return image.crop((left, top, left + bucket_w, top + bucket_h))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a float32 (3, H, W) tensor in [-1, 1]."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).float() / 127.5 - 1.0


def size_conditioning(image_size: Size, bucket: Size, flipped: bool = False) -> SizeConditioning:
    """SDXL's size and crop conditioning of an image of `image_size` (w, h) trained in `bucket` (w, h)."""
    (width, height), (bucket_w, bucket_h) = image_size, bucket
    image_ar = width / height
    if bucket_w / bucket_h > image_ar:
        fit_w, fit_h = bucket_h * image_ar, bucket_h
    else:
        fit_w, fit_h = bucket_w, bucket_w / image_ar
    left, top = (bucket_w - fit_w) // 2, (bucket_h - fit_h) // 2
    if flipped:
        left = bucket_w - (left + fit_w)
    return SizeConditioning((height, width), (int(top), int(left)), (bucket_h, bucket_w))


def _offset(excess: int, random_crop: bool, rng: random.Random) -> int:
    if excess <= 0:
        return 0
    return rng.randint(0, excess) if random_crop else excess // 2
