"""The shape of a LoRA network as plain values: ranks, alphas, and the LoCon / DoRA switches.

One `LoraSpec` drives the injection (which rank each layer gets) and the saved file's metadata
(`ss_network_dim`, `ss_network_alpha`, `ss_network_args`), so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


def is_spatial_conv(module: nn.Module) -> bool:
    """A Conv2d with a kernel larger than 1x1: kohya's LoCon gives these `conv_dim` / `conv_alpha`."""
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) != (1, 1)


@dataclass(frozen=True)
class LoraSpec:
    """rank / alpha for Linear and 1x1 conv layers; conv_rank / conv_alpha for larger kernels (LoCon)."""

    rank: int
    alpha: float
    conv_rank: int | None = None  # None: plain LoRA (a spatial conv chosen by name then gets rank / alpha)
    conv_alpha: float | None = None
    use_dora: bool = False

    @classmethod
    def from_settings(cls, *, network_type: str, lora_rank: int, lora_alpha: float, conv_dim: int,
                      conv_alpha: float, use_dora: bool) -> "LoraSpec":
        """From the config keys of the same names; conv_dim / conv_alpha count only for `locon`."""
        locon = network_type == "locon"
        return cls(rank=lora_rank, alpha=float(lora_alpha), conv_rank=conv_dim if locon else None,
                   conv_alpha=float(conv_alpha) if locon else None, use_dora=use_dora)

    @property
    def network_type(self) -> str:
        return "locon" if self.conv_rank is not None else "lora"

    def rank_for(self, module: nn.Module) -> tuple[int, float, str]:
        """(rank, alpha, config key of that rank) for a base layer."""
        if self.conv_rank is not None and is_spatial_conv(module):
            return self.conv_rank, float(self.conv_alpha if self.conv_alpha is not None else self.conv_rank), \
                "conv_dim"
        return self.rank, self.alpha, "lora_rank"
