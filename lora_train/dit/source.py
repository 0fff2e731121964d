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

from ..core.errors import UserError
from ..models.checkpoint_file import open_checkpoint
from .detect import TRAINED, FluxCheckpoint, flux_checkpoint

_SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")
_OTHER_PIPELINES = {"Flux2": "Flux.2", "QwenImage": "Qwen-Image", "ZImage": "Z-Image", "FluxKontext": "Flux.1 Kontext",
                    "FluxFill": "Flux.1 Fill", "FluxControl": "Flux.1 Control", "FluxPrior": "Flux.1 Redux"}


@dataclass(frozen=True)
class FluxSource:
    """A Flux-family base model on disk."""

    path: Path
    family: str  # flux-dev | flux-schnell | chroma
    checkpoint: FluxCheckpoint | None  # what the single file holds; None for a diffusers folder


def _folder_family(folder: Path) -> str | None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    pipeline = str(index.get("_class_name", ""))
    transformer = str((index.get("transformer") or [None, ""])[1])
    if transformer == "ChromaTransformer2DModel" or pipeline == "ChromaPipeline":
        return "chroma"
    for prefix, title in _OTHER_PIPELINES.items():
        if pipeline.startswith(prefix):
            raise UserError(f"{folder} holds a {pipeline} ({title}) model: {TRAINED}. Choose a FluxPipeline or "
                            "ChromaPipeline folder, or a Flux.1 / Chroma checkpoint, as base model.")
    if pipeline != "FluxPipeline":
        return None
    config = folder / "transformer" / "config.json"
    if not config.is_file():
        raise UserError(f"The diffusers folder {folder} is missing {config}. Copy the whole folder again.")
    return "flux-dev" if json.loads(config.read_text(encoding="utf-8")).get("guidance_embeds") else "flux-schnell"


def flux_source(base_model: str | Path | None) -> FluxSource | None:
    """The Flux-family model `base_model` is, None when it is not one (or cannot be read: the UNet engine's
    loader reports that)."""
    if not base_model:
        return None
    path = Path(base_model)
    if path.is_dir() and (path / "model_index.json").is_file():
        family = _folder_family(path)
        return FluxSource(path, family, None) if family else None
    if not (path.is_file() and path.suffix.lower() in _SINGLE_FILE_SUFFIXES):
        return None
    checkpoint = open_checkpoint(path)
    shapes = {key: tuple(value.shape) for key, value in checkpoint.meta.items()}
    found = flux_checkpoint(shapes, path, checkpoint.metadata)
    return FluxSource(path, found.family, found) if found else None
