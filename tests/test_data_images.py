"""Decoding: EXIF orientation really rotates, every mode becomes RGB, the size guard."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_data_helpers import png_header_only

from lora_train.data.images import UnusableImage, load_rgb, probe_image
from lora_train.core.errors import UserError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _half_red_half_blue(width: int = 40, height: int = 20) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


@pytest.mark.parametrize("fmt, name", [("JPEG", "r.jpg"), ("PNG", "r.png"), ("WEBP", "r.webp")])
def test_exif_orientation_6_rotates_the_image_upright(tmp_path, fmt, name):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: turn 90 degrees clockwise to view
    path = tmp_path / name
    _half_red_half_blue().save(path, format=fmt, exif=exif.tobytes(), quality=95, lossless=True)

    info = probe_image(path)
    image = load_rgb(path, info.orientation)

    assert info.size == (20, 40) and info.orientation == 6
    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60, "the red left half must end up on top"
    assert bottom[2] > 200 and bottom[0] < 60


def test_unrotated_image_keeps_its_orientation(tmp_path):
    path = tmp_path / "plain.jpg"
    _half_red_half_blue().save(path, quality=95)

    info = probe_image(path)

    assert info.size == (40, 20) and info.orientation == 1
    assert load_rgb(path).getpixel((5, 10))[0] > 200


def _rgb_pixels(path):
    image = load_rgb(path)
    assert image.mode == "RGB"
    return np.asarray(image)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)

    pixels = _rgb_pixels(tmp_path / "cmyk.jpg")

    assert pixels[8, 8, 0] > 200 and pixels[8, 8, 1] < 60 and pixels[8, 8, 2] < 60


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")

    pixels = _rgb_pixels(tmp_path / "deep.png")

    assert pixels[0, :, 0].tolist() == [0, 128, 255]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (255, 0, 0, 0))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    rgba.save(tmp_path / "rgba.png")
    Image.new("LA", (2, 1), (0, 0)).save(tmp_path / "la.png")
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0])
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png", transparency=0)

    rgba_pixels = _rgb_pixels(tmp_path / "rgba.png")
    assert rgba_pixels[0, 0].tolist() == [255, 0, 0]
    assert rgba_pixels[0, 1].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 1 for v in rgba_pixels[0, 2].tolist())
    assert _rgb_pixels(tmp_path / "la.png")[0, 0].tolist() == [255, 255, 255]
    assert _rgb_pixels(tmp_path / "palette.png")[0].tolist() == [[255, 255, 255], [0, 255, 0]]


def test_grayscale_becomes_three_channels(tmp_path):
    Image.new("L", (3, 3), 77).save(tmp_path / "gray.png")

    assert _rgb_pixels(tmp_path / "gray.png")[1, 1].tolist() == [77, 77, 77]


def test_size_guard_refuses_without_decoding_or_pillow_warnings(tmp_path, recwarn):
    (tmp_path / "bomb.png").write_bytes(png_header_only(12_000, 12_000))

    with pytest.raises(UnusableImage, match="too large.*12000x12000"):
        probe_image(tmp_path / "bomb.png")
    assert not recwarn.list


def test_image_damaged_after_scanning_is_a_user_error_naming_it(tmp_path):
    path = tmp_path / "gone.png"
    path.write_text("replaced by text")

    with pytest.raises(UserError, match="gone.png cannot be read"):
        load_rgb(path)
