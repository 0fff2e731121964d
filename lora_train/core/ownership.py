"""Which training run saved a file: the run id each saved file records.

A run gets an id when it starts (`new_run_id`), and every file it saves records it: the LoRA's
safetensors header (`lora_train_run_id`), the text of the same name in its `.preview.png`, and the
header of an adapter folder's `adapter_model.safetensors`. A resumed run carries the id on, so it may
replace the partial files it saved before it stopped (`saved_by`), and never a file of the same name
that another run or the user wrote. Read with the standard library and PIL only.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from PIL import Image, PngImagePlugin

from .header_table import header_table

RUN_ID_KEY = "lora_train_run_id"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def new_run_id() -> str:
    return uuid.uuid4().hex


def saved_by(path: Path) -> str | None:
    """The run id a saved LoRA file, preview or adapter folder records; None when it records none."""
    path = Path(path)
    if path.is_dir():
        path = path / ADAPTER_WEIGHTS
    if path.suffix == ".png":
        try:
            with Image.open(path) as image:
                return getattr(image, "text", {}).get(RUN_ID_KEY)
        except (OSError, ValueError, SyntaxError):
            return None
    metadata = (header_table(path) or {}).get("__metadata__")
    return metadata.get(RUN_ID_KEY) if isinstance(metadata, dict) else None


def is_own(path: Path, run_id: str | None) -> bool:
    """Whether `path` exists and is a save of the run `run_id` (which that run may replace)."""
    return run_id is not None and Path(path).exists() and saved_by(path) == run_id


def png_info(run_id: str) -> PngImagePlugin.PngInfo:
    """The text chunk that records the run id in a PNG."""
    info = PngImagePlugin.PngInfo()
    info.add_text(RUN_ID_KEY, run_id)
    return info
