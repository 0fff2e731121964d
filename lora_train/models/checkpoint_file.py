"""Open a single-file checkpoint (.safetensors, or a weights-only pickle .ckpt) and read it part by part.

`open_checkpoint` reads only the header: every tensor as a meta tensor (name, shape, dtype) and
the safetensors metadata, enough to detect the architecture and check configs. `read(prefix)`
then loads the tensors of one part (UNet, VAE, a text encoder), so a 7 GB SDXL file is never
held twice. Files that are not checkpoints get a UserError that says what the file seems to be.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from safetensors import SafetensorError, safe_open

from ..core.errors import UserError

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL = 0x80
_CONVERT_HINT = ("Convert it to .safetensors (for example with the WebUI's Checkpoint Merger, "
                 "checkpoint format: safetensors) and use that file.")


@dataclass
class CheckpointFile:
    """A checkpoint's tensors, known by name and shape; `read` loads the ones under a prefix."""

    path: Path
    meta: dict[str, torch.Tensor]  # every tensor on the meta device: names, shapes, dtypes
    metadata: dict[str, str]
    _load: Callable[[list[str]], Iterable[tuple[str, torch.Tensor]]] = field(repr=False)  # one by one

    def read(self, prefix: str, dtype: torch.dtype | None = None, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        """The tensors whose names start with `prefix` but not with `prefix` + any of `skip` (names kept
        whole), floats cast to `dtype` as each is read (so a part is never held in two dtypes)."""
        skipped = tuple(prefix + part for part in skip)
        keys = [key for key in self.meta if key.startswith(prefix) and not key.startswith(skipped)]
        return {key: value.to(dtype) if dtype and value.is_floating_point() else value
                for key, value in self._load(keys)}


def open_checkpoint(path: str | Path) -> CheckpointFile:
    """Open a single-file checkpoint, or raise a UserError naming the file and what to do."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Model file not found: {path}. Check the path (WebUI checkpoints live in "
                        "models/Stable-diffusion).")
    if not path.is_file():
        raise UserError(f"{path} is not a file.")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path} is empty (0 bytes): the download or copy did not finish. Download it again.")
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(ZIP_MAGIC) or head[0] == PICKLE_PROTOCOL:
        return _open_pickle(path)
    if _looks_like_safetensors(head, size):
        return _open_safetensors(path)
    raise UserError(f"{path} is not a model checkpoint{what_it_is(head)}. Expected a .safetensors or .ckpt file "
                    "with model weights.")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    header_size = int.from_bytes(head[:8], "little")
    return len(head) > 8 and head[8:9] == b"{" and 8 + header_size <= size


def what_it_is(head: bytes) -> str:
    """' but a Git LFS pointer ...', ' but a web page ...', ' but a text file', or '' for a file's first bytes."""
    if not head:
        return " but an empty file (0 bytes): the copy or download did not finish"
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        return " but a Git LFS pointer (a placeholder, not the weights): download the real file"
    if text.startswith((b"<!doctype html", b"<html")):
        return " but a web page (a failed download)"
    printable = sum(32 <= byte < 127 or byte in b"\t\r\n" for byte in head)
    return " but a text file" if printable >= 0.95 * len(head) else ""


def _open_safetensors(path: Path) -> CheckpointFile:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            meta = {key: _meta_tensor(handle.get_slice(key)) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable .safetensors file ({error}); it may be truncated. "
                        "Download it again.") from error

    def load(keys: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        with safe_open(str(path), framework="pt") as handle:
            yield from ((key, handle.get_tensor(key)) for key in keys)

    return CheckpointFile(path, meta, dict(metadata), load)


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn,
                       "F8_E5M2": torch.float8_e5m2}


def _meta_tensor(tensor_slice) -> torch.Tensor:
    dtype = _SAFETENSORS_DTYPES.get(tensor_slice.get_dtype(), torch.uint8)
    return torch.empty(tensor_slice.get_shape(), dtype=dtype, device="meta")


def _open_pickle(path: Path) -> CheckpointFile:
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            loaded = torch.load(path, map_location="cpu", weights_only=True)  # the legacy, non-zip format
    except pickle.UnpicklingError as error:
        needed = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if needed:
            raise UserError(f"{path} is a pickle that needs Python code ({needed.group(1)}) to load, which is unsafe; "
                            f"checkpoints are only loaded with weights_only=True. {_CONVERT_HINT}") from error
        raise UserError(f"{path} is not a readable checkpoint ({error}). Download it again.") from error
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is not a readable checkpoint ({error}); it may be truncated. "
                        "Download it again.") from error
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    tensors = {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)} \
        if isinstance(loaded, dict) else {}
    if not tensors:
        raise UserError(f"{path} holds no model weights. Expected a checkpoint with a state_dict of tensors.")
    meta = {key: torch.empty(value.shape, dtype=value.dtype, device="meta") for key, value in tensors.items()}
    return CheckpointFile(path, meta, {}, lambda keys: ((key, tensors[key]) for key in keys))
