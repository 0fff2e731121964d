"""Read a LoRA file's tensors and header metadata, with clear errors and no pickle code run."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..core.errors import UserError


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a `.safetensors` LoRA, or of a `.pt` / `.ckpt` one (loaded with
    `weights_only=True`, no metadata)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"LoRA file not found: {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} is not a readable LoRA file: it is not a tensors-only PyTorch file (other pickled "
                        "content is never loaded, as it could run code). Use a .safetensors LoRA.") from exc
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a readable LoRA file ({reason}).") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a LoRA state dict (a mapping of names to tensors).")
    return state, {}
