"""Per-block weights, as the LoRA Block Weight and SuperMerger extensions write them.

A block-weight list has one number per block of the family's layout (`Family.blocks`): 17 for SD1 / SD2
(BASE = the text encoder, IN01 IN02 IN04 IN05 IN07 IN08, M00, OUT03 ... OUT11: the UNet blocks that hold
attention) and 12 for SDXL (BASE, IN04 IN05 IN07 IN08, M00, OUT00 ... OUT05). The presets are the
extensions' names: NONE, ALL, INS, IND, INALL, MIDD, OUTD, OUTS, OUTALL, each a set of the layout's groups
(for SDXL the same names pick its blocks by depth). Layers outside the listed blocks (LoCon's outermost
convolutions, conv_in, time embedding) keep weight 1.
"""

from __future__ import annotations

import re

from ..core.errors import UserError
from ..families import family_or_default, trained_families

PRESETS = {
    "NONE": (), "ALL": ("base", "in_shallow", "in_deep", "mid", "out_deep", "out_shallow"),
    "INS": ("base", "in_shallow"), "IND": ("base", "in_deep"), "INALL": ("base", "in_shallow", "in_deep"),
    "MIDD": ("base", "in_deep", "mid", "out_deep"), "OUTD": ("base", "out_deep"), "OUTS": ("base", "out_shallow"),
    "OUTALL": ("base", "out_deep", "out_shallow"),
}
_DIFFUSERS_BLOCK = re.compile(r"^lora_unet_(down|up)_blocks_(\d+)_(attentions|resnets|downsamplers|upsamplers)_(\d+)")
_ORIGINAL_BLOCK = re.compile(r"^lora_unet_(input|output)_blocks_(\d+)_")


def block_of(name: str) -> str | None:
    """The block id (BASE, IN05, M00, OUT03, ...) of a kohya module name, or None outside the blocks."""
    if name.startswith("lora_te"):
        return "BASE"
    if name.startswith(("lora_unet_mid_block_", "lora_unet_middle_block_")):
        return "M00"
    match = _ORIGINAL_BLOCK.match(name)
    if match:
        return f"{'IN' if match[1] == 'input' else 'OUT'}{int(match[2]):02d}"
    match = _DIFFUSERS_BLOCK.match(name)
    if not match:
        return None
    level, kind, index = int(match[2]), match[3], int(match[4])
    if match[1] == "down":
        return f"IN{3 * (level + 1) if kind == 'downsamplers' else 1 + 3 * level + index:02d}"
    return f"OUT{3 * level + (2 if kind == 'upsamplers' else index):02d}"


def block_order(block: str) -> tuple[int, int]:
    """Sort key: BASE, IN00 ... IN11, M00, OUT00 ... OUT11, then anything else."""
    for rank, prefix in enumerate(("BASE", "IN", "M", "OUT")):
        if block.startswith(prefix):
            digits = block[len(prefix):]
            return rank, int(digits) if digits.isdigit() else 0
    return 4, 0


def parse_block_weights(text: str, arch: str | None) -> dict[str, float]:
    """Block id -> weight from a preset name or a comma-separated list of 17 (SD1/SD2) or 12 (SDXL) numbers, for
    family `arch` (the default family's layout when None)."""
    found = family_or_default(arch)
    layout, blocks = found.blocks, found.blocks.blocks
    if not blocks:
        raise UserError(f"Block weights {text!r}: {found.names.title} LoRAs have no per-block weight layout yet; "
                        "leave the block weights out.")
    preset = PRESETS.get(text.strip().upper())
    if preset is not None:
        groups = dict(layout.groups)
        chosen = {block for group in preset for block in groups[group]}
        return {block: float(block in chosen) for block in blocks}
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != len(blocks):
        sharing = " / ".join(row.names.label for row in trained_families() if row.blocks == layout)
        raise UserError(f"Block weights {text!r}: give a preset ({', '.join(PRESETS)}) or {len(blocks)} "
                        f"comma-separated numbers for {sharing} ({', '.join(blocks)}).")
    return dict(zip(blocks, values))


def module_weight(name: str, weights: dict[str, float] | None) -> float:
    """The block weight of a module (1 without block weights or outside the listed blocks)."""
    if weights is None:
        return 1.0
    return weights.get(block_of(name) or "", 1.0)
