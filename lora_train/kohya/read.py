"""Read a LoRA file's tensors and header metadata, with clear errors and no pickle code run.

`safetensors_header` reads a `.safetensors` file's header only (the tensor shapes and metadata):
what `inspect` and the adapter checks need, with the same clear message for a missing, truncated or
foreign file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..core.errors import UserError
from ..models.checkpoint_file import PICKLE_PROTOCOL, ZIP_MAGIC, what_it_is

_READ_ERRORS = (SafetensorError, OSError, RuntimeError, ValueError, EOFError)


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(64)


def _unreadable(path: Path, what: str, exc: BaseException) -> UserError:
    seems = what_it_is(_head(path))
    if seems:
        return UserError(f"{path} is not a {what}{seems}.")
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return UserError(f"{path} is not a readable {what} ({reason}); it may be truncated or damaged: copy or "
                     "download it again.")


def _check_exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise UserError(f"{what[0].upper()}{what[1:]} not found: {path}" if not path.exists() else
                        f"{path} is a folder, not a {what}.")


def safetensors_header(path: str | Path, what: str = "LoRA file") -> tuple[dict[str, tuple[int, ...]],
                                                                            dict[str, str]]:
    """(key -> shape, metadata) from a `.safetensors` file's header; UserError naming the file (as `what`)
    when it is missing, truncated or not a safetensors file."""
    path = Path(path)
    _check_exists(path, what)
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            return shapes, dict(handle.metadata() or {})
    except _READ_ERRORS as exc:
        raise _unreadable(path, what, exc) from exc


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a `.safetensors` LoRA, or of a `.pt` / `.ckpt` one (loaded with
    `weights_only=True`, no metadata)."""
    path = Path(path)
    _check_exists(path, "LoRA file")
    try:
        if path.suffix.lower() == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
        head = _head(path)
        if not head.startswith(ZIP_MAGIC) and head[:1] != bytes([PICKLE_PROTOCOL]):
            raise UserError(f"{path} is not a LoRA file{what_it_is(head) or ''}: give a .safetensors LoRA (or a "
                            "PyTorch .pt / .ckpt one).")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} is not a readable LoRA file: it is not a tensors-only PyTorch file (other pickled "
                        "content is never loaded, as it could run code). Use a .safetensors LoRA.") from exc
    except _READ_ERRORS as exc:
        raise _unreadable(path, "LoRA file", exc) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a LoRA state dict (a mapping of names to tensors).")
    return state, {}
