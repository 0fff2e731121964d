"""Write a LoRA file: the tensors, the header with kohya's hashes added, atomically and never over
an existing file (pick the name with `core.naming.free_lora_path`) unless told to replace the run's own."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch

from ..core.atomic import rewrite_file, write_new_file
from .hashes import addnet_hashes


def save_lora(path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
              replace: bool = False) -> Path:
    """Write a new `.safetensors` with `sshs_model_hash` / `sshs_legacy_hash` added to the metadata; with `replace`,
    over the file there (one the same run saved: core/ownership.py)."""
    model_hash, legacy_hash = addnet_hashes(state_dict, metadata)
    header = {**metadata, "sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash}
    data = safetensors.torch.save(dict(state_dict), header)
    return (rewrite_file if replace else write_new_file)(path, lambda temporary: temporary.write_bytes(data))
