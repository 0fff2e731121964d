"""Turning numerical faults and out-of-memory into messages that say what to change."""

from __future__ import annotations

import math

from ..config.presets import PRESETS
from ..core.errors import UserError


def check_finite_loss(loss: float, step: int, precision_name: str, learning_rate: float) -> None:
    """A NaN or infinite loss stops the run (the last good save stays)."""
    if math.isfinite(loss):
        return
    advice = ["lower learning_rate (now %g)" % learning_rate]
    if precision_name == "fp16":
        advice.insert(0, "use mixed_precision: bf16 (fp16 overflows more easily)")
    raise UserError(f"The loss became {loss} at step {step}: training diverged and was stopped. The last saved "
                    f"LoRA and checkpoint are kept. Try to {', or '.join(advice)}; set max_grad_norm to 1.0 if it "
                    "is off.")


def out_of_memory_message(step: int | None, resolution: int, batch_size: int) -> UserError:
    """`step`: optimizer steps done; None: before training started (moving the model, caching latents)."""
    low = PRESETS["low_vram"]
    settings = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in low.items())
    when = f"after {step} training steps" if step is not None else \
        "before training started (loading the model or caching latents)"
    return UserError(f"Out of GPU memory {when} (resolution {resolution}, batch_size {batch_size}). Use the "
                     f"low VRAM preset ({settings}), or lower resolution. Close other programs using the GPU "
                     "(the WebUI's model is unloaded during training).")
