"""Model files on disk: listing a folder of checkpoints or VAEs, and telling SD1 / SD2 / SDXL apart.

The type is read from a .safetensors header (a length and a JSON table of tensor names) with
the standard library only; pickle `.ckpt` files are never opened here.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from ...core.header_table import safetensors_keys
from ...families.recognise import checkpoint_family

MODEL_EXTENSIONS = (".safetensors", ".ckpt")


@dataclass(frozen=True)
class ModelInfo:
    """A model file as the tab lists it."""

    title: str
    path: str
    arch: str | None = None  # the family's tab label (SD1 | SD2 | SDXL), when known
    hash: str | None = None

    def describe(self) -> str:
        """`title [hash] SD1`; the hash once (the WebUI's titles end with one already)."""
        shown = f"[{self.hash}]" if self.hash and not self.title.rstrip().endswith("]") else ""
        return " ".join(part for part in (self.title, shown, self.arch or "type unknown") if part)


def sniff_arch(path: Path) -> str | None:
    """SD1 / SD2 / SDXL from a .safetensors header; None when unknown. Read once per file version."""
    try:
        version = path.stat()
    except OSError:
        return None
    return _sniff_arch(path, version.st_mtime_ns, version.st_size)


@functools.lru_cache(maxsize=512)
def _sniff_arch(path: Path, mtime_ns: int, size: int) -> str | None:
    keys = safetensors_keys(path) if path.suffix.lower() == ".safetensors" else None
    found = checkpoint_family(keys or [])
    return found.names.label if found and found.trained else None


def list_models(folder: Path | None) -> list[ModelInfo]:
    """Every single-file checkpoint and diffusers folder under `folder`, titled by its path inside it.

    Hugging Face folders (with a config.json or model_index.json) are not searched for files; a
    diffusers pipeline folder is listed as one model.
    """
    if folder is None or not folder.is_dir():
        return []
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        if "model_index.json" in files or "config.json" in files:
            found += [Path(current)] if "model_index.json" in files else []
            dirs[:] = []
            continue
        dirs.sort()
        found += [Path(current, name) for name in files if Path(name).suffix.lower() in MODEL_EXTENSIONS]
    return [ModelInfo(str(path.relative_to(folder)), str(path), sniff_arch(path)) for path in sorted(found)]
