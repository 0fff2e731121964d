"""Tiny image and caption files for the test_data_* tests (no tests in this file)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image


def save_image(path: Path, size: tuple[int, int] = (64, 48), color=(200, 30, 30), mode: str = "RGB",
               caption: str | None = None, **save_args) -> Path:
    """Write a solid image (format from the extension) and, optionally, its .txt caption."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save_args)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with no real pixel data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
