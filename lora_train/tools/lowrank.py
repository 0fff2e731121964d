"""The low-rank algebra behind merge and resize, per module.

- `stack`: several modules at weights as one exact module by rank concatenation
  (up = [c_i up_i], down = [sign(w_i) c_i down_i], c_i = sqrt(|w_i| alpha_i / rank_i), alpha = total rank),
  so its delta is exactly sum_i w_i alpha_i / rank_i up_i @ down_i.
- `factorize`: a full weight change (DoRA computed on the base weights) as a LoRA module by SVD.
- `truncate`: the best rank-k approximation of a module's product by SVD, keeping its strength
  (new alpha = alpha / rank * k), with the relative Frobenius error it makes. The SVD is of the small
  core R_up R_down^T after QR of the two factors, so it costs O(rank^2 (in + out)), not a full matrix SVD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.errors import UserError
from .lora_file import LoraModule


def _as_ndim(tensor: torch.Tensor, ndim: int) -> torch.Tensor:
    return tensor.reshape(*tensor.shape, *[1] * (ndim - tensor.ndim)) if tensor.ndim < ndim else tensor


def stack(name: str, parts: list[tuple[LoraModule, float]]) -> LoraModule | None:
    """The exact module equal to applying every (module, weight) together; None when all weights are 0.
    `name` (the kohya module name) is for the message when the files disagree on the layer's shape."""
    parts = [(module, weight) for module, weight in parts if weight != 0]
    if not parts:
        return None
    ndim = max(module.down.ndim for module, _ in parts)
    ups, downs = [], []
    for module, weight in parts:
        factor = math.sqrt(abs(weight) * module.scale)
        ups.append(factor * _as_ndim(module.up.float(), ndim))
        downs.append(math.copysign(factor, weight) * _as_ndim(module.down.float(), ndim))
    shapes = {(up.shape[0], *down.shape[1:]) for up, down in zip(ups, downs)}
    if len(shapes) > 1:
        raise UserError(f"{name}: the LoRAs give this layer different shapes {sorted(shapes)}; they were trained on "
                        "different models and cannot be merged.")
    down = torch.cat(downs, dim=0)
    return LoraModule(down, torch.cat(ups, dim=1), float(down.shape[0]))


@dataclass(frozen=True)
class Truncated:
    """A module cut to `kept` of its `full` singular values, and what that cost."""

    module: LoraModule
    kept: int
    full: int
    error: float  # ||delta - delta_k||_F / ||delta||_F
    retained: float  # sqrt(sum kept s^2 / sum s^2): the Frobenius norm kept

    @property
    def rank(self) -> int:
        return self.module.rank


def singular_values(module: LoraModule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, S, Vh) of up @ down (flattened, without alpha / rank), in fp32."""
    q_up, r_up = torch.linalg.qr(module.up.float().flatten(1))
    q_down, r_down = torch.linalg.qr(module.down.float().flatten(1).T)
    u, s, vh = torch.linalg.svd(r_up @ r_down.T, full_matrices=False)
    return q_up @ u, s, vh @ q_down.T


def dynamic_rank(s: torch.Tensor, method: str, value: float) -> int:
    """Values to keep by kohya's dynamic methods: `ratio` (s_i >= s_max / value), `cumulative` (sum of s
    reaches `value` of the total) or `fro` (Frobenius norm reaches `value` of the total)."""
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 1
    if method == "ratio":
        return int((s >= s[0] / value).sum())
    weights = s if method == "cumulative" else s.square()
    reached = torch.cumsum(weights, 0) / weights.sum()
    if method == "fro":
        reached = reached.sqrt()
    return int((reached < value - 1e-7).sum()) + 1


def _cut(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, keep: int, like: LoraModule, alpha_per_rank: float
         ) -> Truncated:
    """The module of the first `keep` singular triplets, shaped like `like`, with alpha = alpha_per_rank * keep."""
    keep = max(1, min(keep, s.numel()))
    root = s[:keep].sqrt()
    up = (u[:, :keep] * root).reshape(like.up.shape[0], keep, *like.up.shape[2:])
    down = (root[:, None] * vh[:keep]).reshape(keep, *like.down.shape[1:])
    total = float(s.square().sum())
    kept = float(s[:keep].square().sum())
    error = math.sqrt(max(total - kept, 0.0) / total) if total > 0 else 0.0
    retained = math.sqrt(kept / total) if total > 0 else 1.0
    return Truncated(LoraModule(down, up, alpha_per_rank * keep, like.dora_scale), keep, like.rank, error, retained)


def truncate(module: LoraModule, rank: int | None = None, method: str | None = None, value: float = 0.0
             ) -> Truncated:
    """Cut to `rank`, or to a dynamic rank (`method`, `value`) no higher than `rank` when given."""
    u, s, vh = singular_values(module)
    keep = dynamic_rank(s, method, value) if method else (rank or s.numel())
    return _cut(u, s, vh, min(keep, rank or keep), module, module.alpha / module.rank)


def factorize(change: torch.Tensor, rank: int | None = None) -> Truncated:
    """A full weight change (out, in[, kh, kw]) as a LoRA module at strength 1: all its non-zero singular
    values (exact) or the first `rank`. `full` in the result is the change's numerical rank."""
    u, s, vh = torch.linalg.svd(change.float().flatten(1), full_matrices=False)
    nonzero = max(1, int((s > s[0] * 1e-6).sum())) if s.numel() and float(s[0]) > 0 else 1
    like = LoraModule(torch.empty(nonzero, *change.shape[1:]), torch.empty(change.shape[0], nonzero,
                                                                          *[1] * (change.ndim - 2)), 1.0)
    return _cut(u[:, :nonzero], s[:nonzero], vh[:nonzero], min(rank or nonzero, nonzero), like, 1.0)
