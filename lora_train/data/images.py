"""Reading image files: a cheap check at scan time, a full RGB decode at use time.

`probe_image` opens the header only (size, format, EXIF orientation) and checks that the file
is complete (PNG's IEND chunk, JPEG's end-of-image marker, WebP's RIFF length); only a file
that fails that cheap check is decoded in full to find out whether it is really damaged.
`load_rgb` decodes, applies the orientation found at scan time and converts every mode (CMYK,
16-bit, L, LA, palette with transparency, RGBA) to 8-bit RGB, compositing transparency on white.
Files are only ever opened for reading.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lora_train.core.errors import UserError

# Pillow's own default limit (about 9459 x 9459): above it Pillow warns, above twice it refuses.
MAX_PIXELS = 89_478_485

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {5, 6, 7, 8}
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
_TAIL_BYTES = 32
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class UnusableImage(Exception):
    """The file cannot be trained on; the message says why, in words for the user."""


@dataclass(frozen=True)
class ImageInfo:
    """What scanning learns about an image without decoding it."""

    size: tuple[int, int]  # (width, height) as trained, i.e. after the EXIF orientation
    orientation: int  # EXIF orientation 1-8 (1: as stored)


def probe_image(path: Path, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Size and orientation of an image file, or UnusableImage saying why it cannot be used."""
    file_size = path.stat().st_size
    if file_size == 0:
        raise UnusableImage("the file is empty (0 bytes): replace or remove it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UnusableImage(_too_large(f"{width}x{height} pixels", max_pixels))
                orientation = _orientation(image)
                if not _looks_complete(path, image.format, file_size):
                    image.load()
    except Image.DecompressionBombError:
        raise UnusableImage(_too_large(f"its header claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels",
                                        max_pixels)) from None
    except UnidentifiedImageError:
        raise UnusableImage("not an image Pillow can read (a different file type with an image extension, or "
                            "damaged): replace or remove it") from None
    except _DECODE_ERRORS as exc:
        raise UnusableImage(f"damaged or incomplete ({exc}): re-export or re-download it, or remove it") from None
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return ImageInfo((width, height), orientation)


def load_rgb(path: Path, orientation: int = 1, draft: tuple[int, int] | None = None) -> Image.Image:
    """The decoded image as 8-bit RGB, turned upright by `orientation`; with `draft` (width, height) a JPEG may be
    decoded at a fraction of its size, no smaller than that (for previews and hashes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if draft:
                    image.draft("RGB", draft)
                image.load()
                rgb = to_rgb(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, *_DECODE_ERRORS) as exc:
        raise UserError(f"{path} cannot be read any more ({exc}); it was changed or damaged after the dataset "
                        f"was scanned. Replace or remove it and start again.") from None
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    return rgb


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit values are scaled down and transparent pixels composited on white."""
    if image.mode.startswith("I"):
        values = np.asarray(image).astype(np.float32) / 257.0
        image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _too_large(what: str, max_pixels: int) -> str:
    return (f"too large ({what}; the limit is {max_pixels:,} pixels, a decompression-bomb guard): "
            f"resize it, or remove it")


def _orientation(image: Image.Image) -> int:
    """EXIF orientation from the header only (never triggers a decode); 1 when absent or unreadable."""
    raw = image.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif.load(raw)
            value = exif.get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - any malformed EXIF block just means "no orientation"
        return 1
    return value if value in _TRANSPOSE else 1


def _looks_complete(path: Path, image_format: str | None, file_size: int) -> bool:
    """True when the file visibly ends where its format says; False means "decode to be sure"."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        handle.seek(max(0, file_size - _TAIL_BYTES))
        tail = handle.read()
    if image_format == "PNG":
        return tail.endswith(_PNG_END)
    if image_format in ("JPEG", "MPO"):
        return _JPEG_END in tail
    if image_format == "WEBP":
        return int.from_bytes(head[4:8], "little") + 8 <= file_size
    return False
