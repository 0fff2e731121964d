"""Save a LoRA and the files the WebUI shows beside it: the card's `.json` and its `.preview.png`.

`save_lora` adds kohya's hashes to the header and writes atomically, never over an existing
file (pick the name with `naming.free_lora_path`). The sidecar is what the WebUI's card editor
writes (`ui_extra_networks_user_metadata.write_user_metadata`): the six keys of the Lora editor,
JSON with 4-space indents, UTF-8, non-ASCII kept as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from PIL import Image

from ..core.atomic import write_new_file
from .hashes import addnet_hashes
from ..core.naming import preview_path, sidecar_path

SD_VERSIONS = ("SD1", "SD2", "SDXL")


def save_lora(path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write a new `.safetensors` with `sshs_model_hash` / `sshs_legacy_hash` added to the metadata."""
    model_hash, legacy_hash = addnet_hashes(state_dict, metadata)
    header = {**metadata, "sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash}
    data = safetensors.torch.save(dict(state_dict), header)
    return write_new_file(path, lambda temporary: temporary.write_bytes(data))


def sidecar(*, sd_version: str, activation_text: str = "", preferred_weight: float = 1.0, description: str = "",
            negative_text: str = "", notes: str = "") -> dict[str, object]:
    """The card's user metadata, in the Lora editor's key order."""
    if sd_version not in SD_VERSIONS:
        raise ValueError(f"sd_version must be one of {SD_VERSIONS}, not {sd_version!r}")
    return {"description": description, "sd version": sd_version, "activation text": activation_text,
            "preferred weight": float(preferred_weight), "negative text": negative_text, "notes": notes}


def write_sidecar(lora_path: str | Path, card: Mapping[str, object]) -> Path:
    """`<name>.json` beside the LoRA (see `sidecar` for the content)."""
    text = json.dumps(dict(card), indent=4, ensure_ascii=False)
    return write_new_file(sidecar_path(Path(lora_path)),
                          lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_preview(lora_path: str | Path, image: Image.Image) -> Path:
    """`<name>.preview.png` beside the LoRA: the thumbnail of its card."""
    return write_new_file(preview_path(Path(lora_path)), lambda temporary: image.save(temporary, format="PNG"))
