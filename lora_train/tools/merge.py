"""`merge`: several LoRAs at weights (negative allowed) into one LoRA file.

Exact by default: each module is the rank concatenation of the inputs' modules (`lowrank.stack`),
so the file applied at strength 1 equals applying the inputs together at their weights (ranks add
up). With `rank` (and `conv_rank` for LoCon's spatial convolutions) each stacked module is cut to
that rank by SVD and the relative error of every layer is reported. Modules only some inputs have
are kept (the union); per-block weights scale the layers of each input by block. Inputs for
different base models are refused, and so are DoRA inputs: DoRA rescales W + dW by the norms of
the base weights, so a merge of DoRA LoRAs cannot be computed from the LoRA files alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import UserError
from ..export.save import save_lora
from .blocks import module_weight, parse_block_weights
from .lora_file import LoraFile, LoraModule, module_tensors, read_any_lora, storage_dtype
from .lowrank import stack, truncate
from .output_metadata import derived_metadata


@dataclass(frozen=True)
class LayerReport:
    """One output module: its rank, and (SVD mode) the rank before and the relative error."""

    name: str
    rank: int
    full_rank: int
    error: float = 0.0


@dataclass
class MergeResult:
    path: Path
    layers: list[LayerReport] = field(default_factory=list)

    @property
    def mean_error(self) -> float:
        return sum(layer.error for layer in self.layers) / max(len(self.layers), 1)

    @property
    def max_error(self) -> float:
        return max((layer.error for layer in self.layers), default=0.0)


def check_same_family(files: list[LoraFile]) -> None:
    """UserError naming two inputs made for different base-model families."""
    known = [file for file in files if file.arch]
    for file in known[1:]:
        if file.arch != known[0].arch:
            raise UserError(f"{known[0].path.name} is a LoRA for {known[0].label} but {file.path.name} is for "
                            f"{file.label}: LoRAs for different base models cannot be merged.")


def _refuse_dora(files: list[LoraFile]) -> None:
    for file in files:
        if file.has_dora:
            raise UserError(f"{file.path.name} is a DoRA LoRA (it has dora_scale): DoRA rescales the base weight plus "
                            "the LoRA by the base weight's norms, which the LoRA file does not hold, so DoRA LoRAs "
                            "cannot be merged into a LoRA without the base model. Bake them into the checkpoint "
                            "instead (python -m lora_train bake BASE ...).")


def merged_modules(files: list[LoraFile], weights: list[float], block_weights: list[dict[str, float] | None]
                   ) -> dict[str, LoraModule]:
    """The exact merged module for every module any input has (modules whose weights are all 0 are left out)."""
    names = list(dict.fromkeys(name for file in files for name in file.modules))
    merged = {}
    for name in names:
        parts = [(file.modules[name], weight * module_weight(name, blocks))
                 for file, weight, blocks in zip(files, weights, block_weights) if name in file.modules]
        module = stack(name, parts)
        if module is not None:
            merged[name] = module
    return merged


def merge_loras(paths: list[str | Path], weights: list[float], out: str | Path, *, rank: int | None = None,
                conv_rank: int | None = None, block_weights: list[str] | None = None) -> MergeResult:
    """Merge the files at their weights into `out` (never overwritten); see the module docstring."""
    if len(paths) < 1 or len(weights) != len(paths):
        raise UserError(f"Give one weight per LoRA: {len(paths)} files but {len(weights)} weights.")
    if block_weights and len(block_weights) not in (1, len(paths)):
        raise UserError(f"Give one block-weight list for all LoRAs or one per LoRA, not {len(block_weights)}.")
    for value in (rank, conv_rank):
        if value is not None and value < 1:
            raise UserError(f"--rank / --conv-rank must be at least 1, not {value}.")
    files = [read_any_lora(path) for path in paths]
    check_same_family(files)
    _refuse_dora(files)
    arch = next((file.arch for file in files if file.arch), None)
    specs = (block_weights or [None]) * (len(paths) if not block_weights or len(block_weights) == 1 else 1)
    parsed = [parse_block_weights(spec, arch) if spec else None for spec in specs]
    modules = merged_modules(files, weights, parsed)
    if not modules:
        raise UserError("Every weight is 0: the merge would be empty.")
    result = MergeResult(Path(out))
    if rank is not None or conv_rank is not None:
        for name, module in modules.items():
            target = (conv_rank or rank) if module.is_conv else (rank or module.rank)
            cut = truncate(module, rank=target)
            modules[name] = cut.module
            result.layers.append(LayerReport(name, cut.kept, cut.full, cut.error))
    else:
        result.layers = [LayerReport(name, module.rank, module.rank) for name, module in modules.items()]
    provenance = [{"file": file.path.name, "weight": weight, "sshs_model_hash": file.metadata.get("sshs_model_hash")}
                  for file, weight in zip(files, weights)]
    mode = f"SVD to rank {rank or '-'} / conv rank {conv_rank or rank or '-'}" if result.layers and (
        rank or conv_rank) else "exact"
    comment = f"merge ({mode}) of " + " + ".join(f"{file.path.name} x {weight:g}" for file, weight in zip(files, weights))
    metadata = derived_metadata(files, modules, result.path, comment, provenance)
    save_lora(result.path, module_tensors(modules, storage_dtype(files)), metadata)
    return result
