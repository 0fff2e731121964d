"""The diffusers configs shipped with the package (SD1.5, SD2.1-base, SD2.1-768-v, SDXL base 1.0).

They stand in for the hub: a single-file checkpoint of standard shape is loaded with these
configs, so no download is ever needed. Written from the public values of the official repos.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..families import family

CONFIGS_DIR = Path(__file__).parent / "configs"


def shipped_dir(arch: str, v_prediction: bool) -> Path:
    """The shipped diffusers-layout config folder of a family (sd1 | sd2 | sdxl)."""
    return CONFIGS_DIR / family(arch).parts.config_folder(v_prediction)


def shipped_config(arch: str, v_prediction: bool, subfolder: str) -> dict[str, Any]:
    """One shipped component config (`unet`, `vae`, `text_encoder`, `scheduler`, ...) as a dict."""
    folder = shipped_dir(arch, v_prediction) / subfolder
    name = "scheduler_config.json" if subfolder == "scheduler" else "config.json"
    return json.loads((folder / name).read_text(encoding="utf-8"))
