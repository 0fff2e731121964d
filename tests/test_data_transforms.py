"""Resize, crop, flip, tensor range, and SDXL's size conditioning as kohya computes it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from lora_train.data.buckets import Assignment
from lora_train.data.transforms import prepare_image, resize_and_crop, size_conditioning, to_tensor


def _columns(width: int, height: int) -> Image.Image:
    """Each column's red value is its x coordinate, so a crop's left edge can be read back."""
    row = np.arange(width, dtype=np.uint8)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = row
    return Image.fromarray(pixels)


def test_center_crop_takes_the_middle():
    image = _columns(200, 100)
    cropped = resize_and_crop(image, Assignment((100, 100), (200, 100)), False, random.Random(0))

    assert cropped.size == (100, 100)
    assert cropped.getpixel((0, 50))[0] == 50


def test_random_crop_varies_within_bounds_and_follows_the_seed():
    image = _columns(200, 100)
    assignment = Assignment((100, 100), (200, 100))

    def left(seed):
        return resize_and_crop(image, assignment, True, random.Random(seed)).getpixel((0, 0))[0]

    lefts = {left(seed) for seed in range(40)}
    assert len(lefts) > 10 and min(lefts) >= 0 and max(lefts) <= 100
    assert left(3) == left(3)


def test_resize_then_crop_gives_the_bucket_size():
    image = Image.new("RGB", (1920, 1080), (10, 20, 30))
    prepared = prepare_image(image, Assignment((640, 384), (683, 384)), random_crop=False, flip=False,
                             rng=random.Random(0))

    assert prepared.pixel_values.shape == (3, 384, 640)
    assert prepared.pixel_values.dtype == torch.float32


def test_to_tensor_range():
    image = Image.new("RGB", (2, 1), (0, 0, 0))
    image.putpixel((1, 0), (255, 255, 255))

    tensor = to_tensor(image)

    assert tensor.shape == (3, 1, 2)
    assert tensor[:, 0, 0].tolist() == [-1.0, -1.0, -1.0] and tensor[:, 0, 1].tolist() == [1.0, 1.0, 1.0]


def test_flip_mirrors_about_half_the_time_and_is_reported():
    image = _columns(64, 64)
    assignment = Assignment((64, 64), (64, 64))
    results = [prepare_image(image, assignment, random_crop=False, flip=True, rng=random.Random(seed))
               for seed in range(60)]

    flipped = [r for r in results if r.flipped]
    assert 15 < len(flipped) < 45
    assert torch.equal(flipped[0].pixel_values, torch.flip(results[[r.flipped for r in results].index(False)]
                                                             .pixel_values, dims=[2]))
    never = prepare_image(image, assignment, random_crop=False, flip=False, rng=random.Random(0))
    assert not never.flipped


@pytest.mark.parametrize("image_size, bucket, flipped, expected", [
    # (w, h), bucket (w, h) -> original (h, w), crop (top, left), target (h, w)
    ((600, 400), (320, 192), False, ((400, 600), (0, 16), (192, 320))),
    ((600, 400), (320, 192), True, ((400, 600), (0, 16), (192, 320))),
    ((1000, 1000), (640, 384), False, ((1000, 1000), (0, 128), (384, 640))),
    ((400, 1000), (512, 512), False, ((1000, 400), (0, 153), (512, 512))),
    ((400, 1000), (512, 512), True, ((1000, 400), (0, 154), (512, 512))),
    ((1000, 400), (512, 512), False, ((400, 1000), (153, 0), (512, 512))),
    ((1024, 1024), (1024, 1024), False, ((1024, 1024), (0, 0), (1024, 1024))),
])
def test_sdxl_size_conditioning_matches_kohya(image_size, bucket, flipped, expected):
    conditioning = size_conditioning(image_size, bucket, flipped)

    assert (conditioning.original_size, conditioning.crop_top_left, conditioning.target_size) == expected


def test_prepared_image_carries_its_conditioning():
    prepared = prepare_image(Image.new("RGB", (600, 400)), Assignment((320, 192), (320, 213)), random_crop=True,
                             flip=False, rng=random.Random(0))

    assert prepared.conditioning == size_conditioning((600, 400), (320, 192))
