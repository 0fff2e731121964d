"""Is a base model a Flux-family one, and in which form: a single file (BFL layout, maybe all-in-one) or a
diffusers folder (`FluxPipeline`, `ChromaPipeline`; Forge's Chroma folder says FluxPipeline with a
`ChromaTransformer2DModel`). Only headers and `model_index.json` are read. Flux pipelines of other kinds
(Fill, Kontext, Control, Flux.2) and the other DiT families are refused by name; anything else is None
(the UNet engine's loader then says what it is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.base_family import SINGLE_FILE_SUFFIXES
from ..core.errors import UserError
from ..families import Family
from ..families.interface import DitParts
from ..families.recognise import folder_family
from ..models.checkpoint_file import open_checkpoint
from .detect import TRAINED, FluxCheckpoint, flux_checkpoint

_OTHER_PIPELINES = {"Flux2": "Flux.2", "QwenImage": "Qwen-Image", "ZImage": "Z-Image", "FluxKontext": "Flux.1 Kontext",
                    "FluxFill": "Flux.1 Fill", "FluxControl": "Flux.1 Control", "FluxPrior": "Flux.1 Redux"}


@dataclass(frozen=True)
class FluxSource:
    """A Flux-family base model on disk."""

    path: Path
    family: Family  # Flux.1-dev, Flux.1-schnell or Chroma (families/flux.py)
    checkpoint: FluxCheckpoint | None  # what the single file holds; None for a diffusers folder


def _folder_family(folder: Path) -> Family | None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    pipeline = str(index.get("_class_name", ""))
    for prefix, title in _OTHER_PIPELINES.items():
        if pipeline.startswith(prefix):
            raise UserError(f"{folder} holds a {pipeline} ({title}) model: {TRAINED}. Choose a FluxPipeline or "
                            "ChromaPipeline folder, or a Flux.1 / Chroma checkpoint, as base model.")

    def part_config(file: str) -> dict:
        path = folder / file
        if not path.is_file():
            raise UserError(f"The diffusers folder {folder} is missing {path}. Copy the whole folder again.")
        return json.loads(path.read_text(encoding="utf-8"))

    found = folder_family(pipeline, part_config)
    return found if found is not None and isinstance(found.parts, DitParts) else None


def flux_source(base_model: str | Path | None) -> FluxSource | None:
    """The Flux-family model `base_model` is, None when it is not one (or cannot be read: the UNet engine's
    loader reports that)."""
    if not base_model:
        return None
    path = Path(base_model)
    if path.is_dir() and (path / "model_index.json").is_file():
        family = _folder_family(path)
        return FluxSource(path, family, None) if family else None
    if not (path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES):
        return None
    checkpoint = open_checkpoint(path)
    shapes = {key: tuple(value.shape) for key, value in checkpoint.meta.items()}
    found = flux_checkpoint(shapes, path, checkpoint.metadata)
    return FluxSource(path, found.family, found) if found else None


def block_counts(source: FluxSource) -> tuple[int, int]:
    """The transformer's (double, single) block counts, from the file's shapes or the folder's config."""
    config = source.checkpoint.config if source.checkpoint is not None else json.loads(
        (source.path / "transformer" / "config.json").read_text(encoding="utf-8"))
    return config["num_layers"], config["num_single_layers"]
