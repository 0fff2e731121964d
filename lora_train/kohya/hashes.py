"""The model hashes kohya stores in a LoRA's header, computed as kohya and the WebUI compute them.

`sshs_model_hash` is the sha256 of everything after the safetensors header (the tensor bytes),
which is what the WebUI's `hashes.sha256(..., use_addnet_hash=True)` and the additional-networks
extension compute from the file, so it does not depend on the metadata. `sshs_legacy_hash` is
the first 8 hex digits of the sha256 of the 64 KiB at offset 1 MiB of the file serialised with
its `ss_*` metadata only (kohya's `precalculate_safetensors_hashes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch

_BLOCK = 1 << 20


def _header_end(buffer: bytes | memoryview) -> int:
    return 8 + int.from_bytes(bytes(buffer[:8]), "little")


def addnet_hashes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) for these tensors and this header."""
    data = memoryview(safetensors.torch.save(dict(tensors), {k: v for k, v in metadata.items()
                                                              if k.startswith("ss_")}))
    model_hash = hashlib.sha256(data[_header_end(data):]).hexdigest()
    legacy_hash = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    return model_hash, legacy_hash


def file_model_hash(path: str | Path) -> str:
    """The sha256 of a safetensors file's tensor bytes, read from disk in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(_header_end(handle.read(8)))
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
