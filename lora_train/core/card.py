"""The files the WebUI shows beside a LoRA: the card's `<name>.json` sidecar and its `<name>.preview.png`.

The sidecar is what the WebUI's card editor writes (`ui_extra_networks_user_metadata.write_user_metadata`):
the six keys of the Lora editor, JSON with 4-space indents, UTF-8, non-ASCII kept as is. Both are
written atomically and never over an existing file (a resumed run's preview over its own earlier one only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..families import labels
from .atomic import rewrite_file, write_new_file
from .naming import preview_path, sidecar_path
from .ownership import is_own, png_info



def sidecar(*, sd_version: str, activation_text: str = "", preferred_weight: float = 1.0, description: str = "",
            negative_text: str = "", notes: str = "") -> dict[str, object]:
    """The card's user metadata, in the Lora editor's key order."""
    if sd_version not in labels():
        raise ValueError(f"sd_version must be one of {labels()}, not {sd_version!r}")
    return {"description": description, "sd version": sd_version, "activation text": activation_text,
            "preferred weight": float(preferred_weight), "negative text": negative_text, "notes": notes}


def write_sidecar(lora_path: str | Path, card: Mapping[str, object]) -> Path:
    """`<name>.json` beside the LoRA (see `sidecar` for the content)."""
    text = json.dumps(dict(card), indent=4, ensure_ascii=False)
    return write_new_file(sidecar_path(Path(lora_path)),
                          lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_preview(lora_path: str | Path, image: Any, run_id: str | None = None) -> Path:
    """`<name>.preview.png` beside the LoRA (a PIL image): the thumbnail of its card. With `run_id` it records the
    run that made it, and replaces a preview that run saved before (a resumed run's newer sample)."""
    path = preview_path(Path(lora_path))
    info = png_info(run_id) if run_id else None
    write = rewrite_file if is_own(path, run_id) else write_new_file
    return write(path, lambda temporary: image.save(temporary, format="PNG", pnginfo=info))
