"""`resize`: a LoRA to a lower rank by SVD, at a fixed rank or a dynamic one, keeping its strength.

Each module's product up @ down is cut to k singular values and written with alpha = old alpha /
old rank * k, so at the same strength it has the same effect up to the dropped values. Dynamic
methods (kohya's `resize_lora.py`): `ratio:R` keeps values >= the largest / R, `cumulative:C`
keeps values until their sum reaches C of the total, `fro:F` until the Frobenius norm reaches F;
with `rank` too, that is the upper bound. Never upward: a rank above the file's is refused, and a
module already at or below the target keeps its own rank. The report gives, per layer, the rank
kept, the Frobenius norm retained and the relative error; the header is rewritten (dim, alpha,
hashes) and records what was done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import UserError
from ..kohya.write import save_lora
from .lora_file import module_tensors, read_any_lora, storage_dtype
from .lowrank import Truncated, truncate
from .output_metadata import derived_metadata

DYNAMIC_METHODS = ("fro", "ratio", "cumulative")


@dataclass
class ResizeResult:
    path: Path
    layers: dict[str, Truncated] = field(default_factory=dict)

    @property
    def mean_retained(self) -> float:
        return sum(layer.retained for layer in self.layers.values()) / max(len(self.layers), 1)

    @property
    def mean_error(self) -> float:
        return sum(layer.error for layer in self.layers.values()) / max(len(self.layers), 1)

    @property
    def max_error(self) -> float:
        return max((layer.error for layer in self.layers.values()), default=0.0)


def parse_dynamic(text: str) -> tuple[str, float]:
    """`fro:0.95` -> ("fro", 0.95); UserError naming the accepted forms otherwise."""
    method, _, value = text.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    valid = method in DYNAMIC_METHODS and (number > 1 if method == "ratio" else 0 < number <= 1)
    if not valid:
        raise UserError(f"--dynamic {text!r}: use fro:F or cumulative:C with 0 < F, C <= 1 (e.g. fro:0.95), "
                        "or ratio:R with R > 1 (e.g. ratio:4).")
    return method, number


def resize_lora(path: str | Path, out: str | Path, *, rank: int | None = None, dynamic: str | None = None,
                conv_rank: int | None = None) -> ResizeResult:
    """Resize `path` into `out` (never overwritten); see the module docstring."""
    if rank is None and dynamic is None:
        raise UserError("Say how to resize: --rank N, or --dynamic fro:0.95 | ratio:4 | cumulative:0.9.")
    method, value = parse_dynamic(dynamic) if dynamic else (None, 0.0)
    source = read_any_lora(path)
    highest = max(module.rank for module in source.modules.values())
    for asked, label in ((rank, "--rank"), (conv_rank, "--conv-rank")):
        if asked is not None and asked < 1:
            raise UserError(f"{label} {asked}: a rank is at least 1 (the highest of {source.path.name} is {highest}).")
        if asked is not None and asked > highest:
            raise UserError(f"{label} {asked} is not possible for {source.path.name}: its highest rank is {highest} "
                            "and resize only lowers ranks (a higher rank adds nothing: the extra singular values "
                            "are 0). "
                            f"Choose a rank from 1 to {highest}.")
    result = ResizeResult(Path(out))
    for name, module in source.modules.items():
        target = conv_rank if module.is_conv and conv_rank else rank
        result.layers[name] = truncate(module, rank=min(target, module.rank) if target else None, method=method,
                                       value=value)
    modules = {name: layer.module for name, layer in result.layers.items()}
    how = f"rank {rank}" if not dynamic else f"dynamic {dynamic}" + (f", at most rank {rank}" if rank else "")
    comment = (f"resized from {source.path.name} ({how}); mean Frobenius retained {result.mean_retained:.4f}. "
               + source.metadata.get("ss_training_comment", ""))
    provenance = [{"file": source.path.name, "resize": how,
                   "sshs_model_hash": source.metadata.get("sshs_model_hash")}]
    metadata = {**source.metadata, **derived_metadata([source], modules, result.path, comment.strip(), provenance)}
    if "ss_tag_frequency" in source.metadata:  # one input: its own table, folder names unchanged
        metadata["ss_tag_frequency"] = source.metadata["ss_tag_frequency"]
    save_lora(result.path, module_tensors(modules, storage_dtype([source])), metadata)
    return result
