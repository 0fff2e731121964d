"""Which Flux layers get a LoRA: by kind inside the double and single blocks (`flux_targets`), CLIP-L's
attention / MLP (`text_encoder_targets`, when `train_text_encoder`), or exact names (`target_modules`).

Kinds, on diffusers' module names (the file fuses them back into BFL's, `lora_file`):
- `attention`: q, k, v and the output projections of both streams (`attn.*`); in single blocks also
  `proj_out` (BFL's `linear2`, the output of attention and MLP together);
- `mlp`: the feed-forward layers (`ff.*`, `ff_context.*`; `proj_mlp` in single blocks);
- `modulation`: the per-block modulation (`norm1.linear`, `norm1_context.linear`, `norm.linear`; BFL's
  `img_mod` / `txt_mod` / `modulation`), which Chroma does not have.
kohya's default adapts every linear of the blocks, i.e. all three kinds; the default here is attention + MLP.
`train_double_block_indices` / `train_single_block_indices` (kohya's names: `all`, `none`, `0-3,10`) limit
them to some blocks, as artists do for style (e.g. single blocks only) versus likeness.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from ..adapters.targets import TargetSet, names_by_entries, text_encoder_target_names
from ..core.errors import UserError
from ..families.interface import LoraTargets

_BLOCK = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")
_MODULATION = ("norm1.linear", "norm1_context.linear", "norm.linear")


def layer_kind(block: str, path: str) -> str | None:
    """The `flux_targets` kind of a linear at `path` inside a double (`transformer_blocks`) or single block."""
    if path.startswith("attn.") or (block == "single_transformer_blocks" and path == "proj_out"):
        return "attention"
    if path.startswith(("ff.", "ff_context.")) or path == "proj_mlp":
        return "mlp"
    return "modulation" if path in _MODULATION else None


BLOCK_KEYS = {"transformer_blocks": "train_double_block_indices", "single_transformer_blocks": "train_single_block_indices"}


def block_indices(value: str, count: int, key: str) -> set[int]:
    """kohya's block selection: `all`, `none`, or indices and ranges (`0-3,10`) of `count` blocks."""
    text = value.strip().lower()
    if text in ("all", ""):
        return set(range(count))
    if text == "none":
        return set()
    chosen: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UserError(f"{key}: {part.strip()!r} is not a block index or range; write e.g. 0-3,10, all or none.")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first > last or last >= count:
            raise UserError(f"{key}: {part.strip()} is outside this model's {count} blocks (0-{count - 1}).")
        chosen.update(range(first, last + 1))
    return chosen


def flux_target_names(transformer: nn.Module, kinds: Sequence[str], double_blocks: str = "all",
                      single_blocks: str = "all") -> tuple[str, ...]:
    """The block linears of the given kinds, in the chosen double and single blocks."""
    config = transformer.config
    chosen = {"transformer_blocks": block_indices(double_blocks, config.num_layers, BLOCK_KEYS["transformer_blocks"]),
              "single_transformer_blocks": block_indices(single_blocks, config.num_single_layers,
                                                         BLOCK_KEYS["single_transformer_blocks"])}
    names = []
    for path, module in transformer.named_modules():
        match = _BLOCK.match(path)
        if (match and isinstance(module, nn.Linear) and int(match.group(2)) in chosen[match.group(1)]
                and layer_kind(match.group(1), match.group(3)) in kinds):
            names.append(path)
    return tuple(names)


def select_flux_targets(transformer: nn.Module, clip: nn.Module | None, blocks: LoraTargets, *, train_unet: bool,
                        train_text_encoder: bool,
                        flux_targets: Sequence[str], text_encoder_targets: Sequence[str],
                        target_modules: Sequence[str] | None, double_blocks: str = "all",
                        single_blocks: str = "all") -> TargetSet:
    """The layers to adapt: in the transformer and in CLIP-L (when there is one and it trains; its attention / MLP
    classes are the family's `blocks`)."""
    components = {"transformer": transformer} if train_unet else {}
    if train_text_encoder and clip is not None:
        components["text encoder"] = clip
    if not components:
        raise UserError("train_unet is off and there is no text encoder to train: there is nothing to train.")
    if target_modules is not None:
        found = names_by_entries(components, target_modules)
    else:
        found = {label: flux_target_names(component, flux_targets, double_blocks, single_blocks)
                 if label == "transformer"
                 else text_encoder_target_names(component, blocks, text_encoder_targets)
                 for label, component in components.items()}
    targets = TargetSet(found.get("transformer", ()), (found.get("text encoder", ()),) if clip is not None else ())
    if not len(targets):
        raise UserError(f"No layer selected for LoRA: flux_targets {list(flux_targets)} in the chosen blocks selects "
                        "none of this model's layers (Chroma has no modulation layers). Choose attention and / or "
                        "mlp, and some blocks.")
    return targets
