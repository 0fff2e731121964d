"""Forge's and Forge Neo's own ways, where they differ from A1111's: the files of the "VAE / Text Encoder"
selector, and freeing the loaded model through `backend.memory_management` (Neo has no `modules.lowvram`, and
no `sd_models.send_model_to_device`).

Names as in Forge dfdcbab6 and Neo (docs/webui.md): `sd_models.model_data` holds `sd_model` (a
`ForgeDiffusionEngine`, or `FakeInitialModel` before the first load), `forge_loading_parameters` (with
`checkpoint_info` and `additional_modules`, the selector's file paths, also `shared.opts.forge_additional_modules`)
and `forge_hash`; `sd_models.forge_model_reload()` loads what the parameters name when their hash differs.
Called with the WebUI's modules, so this file imports none of them.
"""

from __future__ import annotations

import gc
import sys
from types import ModuleType
from typing import Any


def forge_memory() -> ModuleType | None:
    """Forge's (and Neo's) `backend.memory_management`, None on A1111. Forge imports it before any extension."""
    return sys.modules.get("backend.memory_management")


def selected_modules(model_data: Any, opts: Any) -> list[str]:
    """The files chosen in the "VAE / Text Encoder" selector: what Forge loads with the checkpoint next."""
    chosen = (getattr(model_data, "forge_loading_parameters", None) or {}).get("additional_modules")
    if chosen is None:
        chosen = getattr(opts, "forge_additional_modules", None)
    return [str(path) for path in chosen or []]


def unload(sd_models: Any, memory: ModuleType) -> None:
    """Drop Forge's model from VRAM and RAM, as Forge does before loading another checkpoint
    (`forge_model_reload`): the placeholder model in its place, the load hash cleared so that the next
    `forge_model_reload` loads it again, every model off the GPU, the CUDA cache emptied."""
    placeholder = getattr(sd_models, "FakeInitialModel", None)
    sd_models.model_data.sd_model = placeholder() if placeholder else None
    sd_models.model_data.forge_hash = ""
    memory.unload_all_models()
    gc.collect()
    memory.soft_empty_cache()
