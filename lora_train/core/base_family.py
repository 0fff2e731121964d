"""Which trained family a base model is for, torch-free, before any engine is imported: a single file by its
safetensors header's tensor names, a diffusers folder by its model_index.json (and the part configs the
families declare). `train` asks the family found for its engine (`Family.engine`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..families import Family
from ..families.recognise import checkpoint_family, folder_family
from .header_table import safetensors_keys

SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def base_model_family(base_model: str | Path | None) -> Family | None:
    """The trained family of `base_model`; None when nothing tells (a pickle, a file that cannot be read, a
    family that is refused): the default engine's loader then says what it is."""
    found = recognised_family(base_model)
    return found if isinstance(found, Family) else None


def recognised_family(base_model: str | Path | None):
    """What the tensor names or the folder tell of `base_model`: a trained Family, a family refused by name
    (`trained` false), or None when nothing tells."""
    if not base_model:
        return None
    path = Path(base_model)
    found = None
    if path.is_dir():
        index = _json(path / "model_index.json")
        if index:
            found = folder_family(str(index.get("_class_name", "")), lambda file: _json(path / file))
    elif path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        found = checkpoint_family(safetensors_keys(path) or [])
    return found
