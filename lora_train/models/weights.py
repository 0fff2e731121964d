"""Put converted weights into a model built without memory, strictly.

The model is built on the meta device (accelerate's `init_empty_weights`), the state dict is
compared with it name by name and shape by shape, and only a perfect match is assigned: a missing,
unexpected or misshapen tensor is a UserError, never a silently random or ignored weight.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, TypeVar

import torch
from accelerate import init_empty_weights

from ..core.errors import UserError

Module = TypeVar("Module", bound=torch.nn.Module)
_EXAMPLES = 3


def empty_model(build: Callable[[], Module]) -> Module:
    """`build()` with its parameters on the meta device (buffers stay real)."""
    with init_empty_weights():
        return build()


def check_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, advice: str) -> None:
    """Raise a UserError naming `what` when `state_dict` does not fit `model` exactly."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    misshapen = [f"{key} {list(state_dict[key].shape)} (model {list(shape)})"
                 for key, shape in expected.items() if key in state_dict and tuple(state_dict[key].shape) != shape]
    report_mismatch(what, advice, missing=expected.keys() - state_dict.keys(),
                    unexpected=state_dict.keys() - expected.keys(), **{"with another shape": misshapen})


def report_mismatch(what: str, advice: str, **problems: Iterable[str]) -> None:
    """Raise a UserError listing, per kind of problem, how many tensors and a few names; nothing when all are empty."""
    found = {kind: sorted(names) for kind, names in problems.items()}
    parts = [f"{len(names)} {kind} (e.g. {', '.join(names[:_EXAMPLES])})" for kind, names in found.items() if names]
    if parts:
        raise UserError(f"{what} does not match its model config: {'; '.join(parts)}. {advice}")


def load_weights(model: Module, state_dict: Mapping[str, torch.Tensor], what: str, advice: str) -> Module:
    """Check `state_dict` (already in the wanted dtype) against an `empty_model` and assign it; the
    model comes back frozen, in eval mode."""
    check_weights(model, state_dict, what, advice)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval().requires_grad_(False)
