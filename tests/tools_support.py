"""Helpers for the LoRA tools tests (no tests here): LoRA files of tiny models with random weights."""

from __future__ import annotations

from pathlib import Path

import torch
from test_export_support import trained

from lora_train.adapters.spec import LoraSpec
from lora_train.kohya.state import kohya_state_dict
from lora_train.kohya.write import save_lora

VERSIONS = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}


def lora_file(folder: Path, name: str, arch: str, spec: LoraSpec, seed: int = 0, *, metadata: bool = True):
    """(path, the tiny model carrying that LoRA) for a random LoRA of this spec, saved in fp32."""
    model = trained(arch, spec, seed=seed)
    header = {"ss_base_model_version": VERSIONS[arch], "ss_network_dim": str(spec.rank)} if metadata else {}
    path = save_lora(folder / f"{name}.safetensors", kohya_state_dict(arch, model.unet, model.text_encoders, "fp32"),
                     header)
    return path, model


def max_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    return float((first - second).abs().max())
