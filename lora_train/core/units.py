"""Sizes in words for messages: a figure that never rounds a real size to 0 (`1.0 KB`, `350 KB`, `2.1 GB`)."""

from __future__ import annotations

_UNITS = ("KB", "MB", "GB", "TB")


def byte_size(count: float) -> str:
    """`count` bytes in the largest unit (powers of 1024) that keeps it at 1 or more; one decimal below 10."""
    if abs(count) < 1024:
        return f"{int(count)} byte{'' if int(count) == 1 else 's'}"
    value, unit = float(count) / 1024, 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.1f} {_UNITS[unit]}" if abs(value) < 10 else f"{value:,.0f} {_UNITS[unit]}"
