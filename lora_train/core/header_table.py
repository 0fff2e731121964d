"""A .safetensors file's header table read with the standard library only (for the WebUI side).

The header is a little-endian length and a JSON table of tensor names (with their dtype, shape and
offsets) plus `__metadata__`. `kohya.read.safetensors_header` is the engine's strict reader, which
names a damaged file in a UserError; this one answers None for anything that is not such a file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

HEADER_LIMIT = 100_000_000


def header_table(path: Path) -> dict[str, Any] | None:
    """The JSON header of a .safetensors file (tensor table and `__metadata__`), or None when it is not one."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= length <= HEADER_LIMIT:
                return None
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
    return header if isinstance(header, dict) else None


def safetensors_keys(path: Path) -> list[str] | None:
    """The tensor names of a .safetensors file, or None when it is not one."""
    header = header_table(path)
    return None if header is None else [key for key in header if key != "__metadata__"]
