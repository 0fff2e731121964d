"""Model files on disk: listing a folder of checkpoints or VAEs, and telling their family (SD1 / SD2 / SDXL,
Flux.1-dev / schnell, Chroma, and the families recognised only to be refused) by the families' table.

The type is read from a .safetensors header (a length and a JSON table of tensor names) with
the standard library only; pickle `.ckpt` files are never opened here.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from ...core.header_table import safetensors_keys
from ...families import all_families, trained_families
from ...families.interface import Family, NotTrained
from ...families.recognise import checkpoint_family

MODEL_EXTENSIONS = (".safetensors", ".ckpt")


@dataclass(frozen=True)
class ModelInfo:
    """A model file as the tab lists it."""

    title: str
    path: str
    arch: str | None = None  # the family's tab label (SD1 | SD2 | SDXL | Flux), when known
    hash: str | None = None
    family: str | None = None  # the family's id (flux-dev, chroma; z-image for a family that is not trained)

    def describe(self) -> str:
        """`title [hash] SD1`, `title Flux (Chroma)`; the hash once (the WebUI's titles end with one already)."""
        shown = f"[{self.hash}]" if self.hash and not self.title.rstrip().endswith("]") else ""
        return " ".join(part for part in (self.title, shown, family_text(self.family, self.arch)) if part)


def family_text(id: str | None, label: str | None) -> str:
    """What the tab calls a family: its label, with its title where other trained families share the label
    (`Flux (Chroma)`); a family that is not trained by title, said so."""
    row = next((row for row in all_families() if row.id == id), None)
    if isinstance(row, NotTrained):
        return f"{row.title} (lora_train does not train it)"
    if isinstance(row, Family) and [other.names.label for other in trained_families()].count(row.names.label) > 1:
        return f"{row.names.label} ({row.names.title})"
    return label or (row.names.label if row else "type unknown")


def file_version(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, None when it cannot be read: what a cache of its header's answers is keyed by."""
    try:
        version = path.stat()
    except OSError:
        return None
    return version.st_mtime_ns, version.st_size


def checkpoint_keys(path: Path) -> frozenset[str] | None:
    """The tensor names in a .safetensors file's header, None for any other file."""
    keys = safetensors_keys(path) if path.suffix.lower() == ".safetensors" else None
    return None if keys is None else frozenset(keys)


def sniff_family(path: Path) -> Family | NotTrained | None:
    """The family row (trained or refused by name) of a single-file checkpoint, from its header; None when unknown.
    Read once per file version."""
    version = file_version(path)
    return None if version is None else _family(path, *version)


@functools.lru_cache(maxsize=512)
def _family(path: Path, mtime_ns: int, size: int) -> Family | NotTrained | None:
    return checkpoint_family(checkpoint_keys(path) or ())


def sniff_arch(path: Path) -> str | None:
    """The label (SD1 / SD2 / SDXL / Flux) of a trained family from a .safetensors header; None when unknown."""
    found = sniff_family(path)
    return found.names.label if isinstance(found, Family) else None


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
