"""Write a LoRA file: the tensors, the header with kohya's hashes added, atomically and never over
an existing file (pick the name with `core.naming.free_lora_path`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch

from ..core.atomic import write_new_file
from .hashes import addnet_hashes


def save_lora(path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write a new `.safetensors` with `sshs_model_hash` / `sshs_legacy_hash` added to the metadata."""
    model_hash, legacy_hash = addnet_hashes(state_dict, metadata)
    header = {**metadata, "sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash}
    data = safetensors.torch.save(dict(state_dict), header)
    return write_new_file(path, lambda temporary: temporary.write_bytes(data))
