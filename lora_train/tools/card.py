"""The WebUI card of a merged LoRA: `<name>.json` (sd version, trigger words, what it is made of) and a preview."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..core.errors import UserError
from ..core.card import sidecar, write_preview, write_sidecar
from ..families import family_or_default
from .lora_file import read_any_lora

def write_card(lora_path: Path, sources: list[str], weights: list[float], preview: str | None, *, card: bool
               ) -> list[Path]:
    """Write the sidecar (when `card`) and the preview (when given) beside `lora_path`; the paths written."""
    written = []
    if card:
        merged = read_any_lora(lora_path)
        words = merged.metadata.get("modelspec.trigger_phrase", "")
        recipe = " + ".join(f"{Path(source).stem} x {weight:g}" for source, weight in zip(sources, weights))
        label = family_or_default(merged.arch).names.label
        written.append(write_sidecar(lora_path, sidecar(sd_version=label, activation_text=words,
                                                        description=f"Merge of {recipe}",
                                                        notes=merged.metadata.get("ss_training_comment", ""))))
    if preview:
        try:
            with Image.open(preview) as image:
                written.append(write_preview(lora_path, image.convert("RGB")))
        except OSError as exc:
            raise UserError(f"--preview {preview}: not a readable image ({exc}).") from exc
    return written
