"""`merge`: several LoRAs at weights (negative allowed) into one LoRA file.

Exact by default: each module is the rank concatenation of the inputs' modules (`lowrank.stack`),
so the file applied at strength 1 equals applying the inputs together at their weights (ranks add
up). With `rank` (and `conv_rank` for LoCon's spatial convolutions) each stacked module is cut to
that rank by SVD and the relative error of every layer is reported. Modules only some inputs have
are kept (the union); per-block weights scale the layers of each input by block. Inputs for
different base models are refused. DoRA rescales W + dW by the norms of the base weights, so a merge
with DoRA inputs is computed on the base model (`base`): each layer's change is the sum of what the
WebUI applies for every input on that base, written as a plain LoRA by SVD (exact with all non-zero
values, or cut to `rank`). Without a base, DoRA inputs are refused with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import UserError
from ..kohya.write import save_lora
from .blocks import module_weight, parse_block_weights
from .lora_file import LoraFile, LoraModule, module_tensors, read_any_lora, storage_dtype
from .lowrank import factorize, stack, truncate
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
                            "can only be merged on the base model: add --base CHECKPOINT (the merge is then a plain "
                            "LoRA for that model), or bake them into it (python -m lora_train bake BASE ...).")


def merged_modules(files: list[LoraFile], weights: list[float], block_weights: list[dict[str, float] | None],
                   arch: str | None = None) -> dict[str, LoraModule]:
    """The exact merged module for every module any input has (modules whose weights are all 0 are left out)."""
    names = list(dict.fromkeys(name for file in files for name in file.modules))
    merged = {}
    for name in names:
        parts = [(file.modules[name], weight * module_weight(name, blocks, arch))
                 for file, weight, blocks in zip(files, weights, block_weights) if name in file.modules]
        module = stack(name, parts)
        if module is not None:
            merged[name] = module
    return merged


def cut_to_rank(modules: dict[str, LoraModule], rank: int | None, conv_rank: int | None) -> list[LayerReport]:
    """SVD mode (a rank given): cut every module in place and report; exact mode: report the ranks."""
    if rank is None and conv_rank is None:
        return [LayerReport(name, module.rank, module.rank) for name, module in modules.items()]
    layers = []
    for name, module in modules.items():
        cut = truncate(module, rank=(conv_rank or rank) if module.is_conv else (rank or module.rank))
        modules[name] = cut.module
        layers.append(LayerReport(name, cut.kept, cut.full, cut.error))
    return layers


def merged_on_base(files: list[LoraFile], weights: list[float], block_weights: list[dict[str, float] | None],
                   base_path: Path, rank: int | None, conv_rank: int | None) -> tuple[dict[str, LoraModule],
                                                                                     list[LayerReport]]:
    """Every module's summed change as the WebUI applies it on the base (DoRA included), as LoRA modules."""
    from .bake import check_base_family, load_base_weights, module_change

    base = load_base_weights(base_path)
    check_base_family(base, files, base_path)
    targets = base.module_targets()
    modules, layers = {}, []
    for name in dict.fromkeys(name for file in files for name in file.modules):
        target = targets.get(name)
        if target is None:
            raise UserError(f"{name} is not a layer of {base_path.name}: the LoRAs were made for another model.")
        weight = base.state[target.key].float()[target.rows or slice(None)]
        parts = [(file.modules[name], factor * module_weight(name, blocks, base.arch))
                 for file, factor, blocks in zip(files, weights, block_weights) if name in file.modules]
        if all(factor == 0 for _, factor in parts):
            continue
        change = sum(factor * module_change(name, module, weight) for module, factor in parts if factor != 0)
        cut = factorize(change, (conv_rank or rank) if change.ndim == 4 and change.shape[2:] != (1, 1) else rank)
        modules[name] = cut.module
        layers.append(LayerReport(name, cut.kept, cut.full, cut.error))
    return modules, layers


def merge_loras(paths: list[str | Path], weights: list[float], out: str | Path, *, rank: int | None = None,
                conv_rank: int | None = None, block_weights: list[str] | None = None,
                base: str | Path | None = None) -> MergeResult:
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
    if base is None:
        _refuse_dora(files)
    arch = next((file.arch for file in files if file.arch), None)
    specs = (block_weights or [None]) * (len(paths) if not block_weights or len(block_weights) == 1 else 1)
    parsed = [parse_block_weights(spec, arch) if spec else None for spec in specs]
    result = MergeResult(Path(out))
    if base is not None:
        modules, result.layers = merged_on_base(files, weights, parsed, Path(base), rank, conv_rank)
    else:
        modules = merged_modules(files, weights, parsed, arch)
        result.layers = cut_to_rank(modules, rank, conv_rank)
    if not modules:
        raise UserError("Every weight is 0: the merge would be empty.")
    provenance = [{"file": file.path.name, "weight": weight, "sshs_model_hash": file.metadata.get("sshs_model_hash")}
                  for file, weight in zip(files, weights)]
    mode = f"SVD to rank {rank or '-'} / conv rank {conv_rank or rank or '-'}" if rank or conv_rank else "exact"
    if base is not None:
        mode += f", computed on {Path(base).name}"
    recipe = " + ".join(f"{file.path.name} x {weight:g}" for file, weight in zip(files, weights))
    comment = f"merge ({mode}) of {recipe}"
    metadata = derived_metadata(files, modules, result.path, comment, provenance)
    save_lora(result.path, module_tensors(modules, storage_dtype(files)), metadata)
    return result
