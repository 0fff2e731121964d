"""The optimizer's part of a checkpoint, also when the run resuming it uses another optimizer.

A checkpoint records which optimizer saved it (`optimizer_kind`). Resumed by the same one, its state
loads as it is. `adamw8bit` now runs torch's fused AdamW where bitsandbytes would keep 32-bit state
anyway (optim.py); a checkpoint that bitsandbytes saved for such a run (before that change, or with
bitsandbytes-only `optimizer_args`) holds the same two fp32 moments under other names, so they are
carried over and the run resumes exactly. Any other change of optimizer (`optimizer: lion` on an
`adamw` checkpoint) cannot carry the moments: they start again, and the run says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .reporting import Say

BNB_STATE = "__bnb_optimizer_quant_state__"  # where bitsandbytes' state_dict() puts its state tensors


def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    return f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any], saved_kind: str | None,
                         origin: Path, say: Say) -> None:
    """Load `saved` (a state_dict) into `optimizer`, converting or leaving it as described above.
    `saved_kind` is None for checkpoints written before kinds were recorded."""
    current = optimizer_kind(optimizer)
    saved_kind = saved_kind or ("bitsandbytes" if _bitsandbytes_states(saved) else current)
    if saved_kind == current:
        optimizer.load_state_dict(saved)
        return
    converted = _as_torch_adamw(saved, optimizer) if isinstance(optimizer, torch.optim.AdamW) else None
    if converted is not None:
        optimizer.load_state_dict(converted)
        say(f"Checkpoint {origin}: its optimizer state, saved by {saved_kind}, was carried over to torch's AdamW "
            "(the same fp32 moments).")
        return
    say(f"Checkpoint {origin} was saved with the optimizer {saved_kind}; this run uses {current}, so the "
        "optimizer's moments start again. The LoRA weights, step, learning-rate schedule and place in the data "
        "resume as saved.", "warning")


def _bitsandbytes_states(saved: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-parameter states of a bitsandbytes state_dict (empty for any other optimizer's)."""
    states = list(saved.get("state", {}).values())
    return states if states and all(BNB_STATE in state for state in states) else []


def _as_torch_adamw(saved: dict[str, Any], optimizer: torch.optim.AdamW) -> dict[str, Any] | None:
    """bitsandbytes' AdamW state with only 32-bit moments, as torch's AdamW state_dict for `optimizer`'s
    groups at the saved learning rates; None when any moment is 8-bit (quantized) or the groups differ."""
    states = _bitsandbytes_states(saved)
    if not states and saved.get("state"):
        return None
    target = optimizer.state_dict()
    if [len(group["params"]) for group in saved["param_groups"]] != [len(g["params"]) for g in target["param_groups"]]:
        return None
    converted = {}
    for index, state in saved["state"].items():
        moments = state[BNB_STATE]
        first, second = moments.get("state1"), moments.get("state2")
        if not (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)
                and first.dtype == second.dtype == torch.float32):
            return None
        converted[index] = {"step": torch.tensor(float(state["step"])), "exp_avg": first, "exp_avg_sq": second}
    groups = [{**group, **{key: old[key] for key in ("lr", "initial_lr") if key in old}}
              for group, old in zip(target["param_groups"], saved["param_groups"])]
    return {"state": converted, "param_groups": groups}
