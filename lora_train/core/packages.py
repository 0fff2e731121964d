"""Whether a Python distribution is installed (by its pip name), without importing it."""

from __future__ import annotations

from importlib import metadata


def installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True
