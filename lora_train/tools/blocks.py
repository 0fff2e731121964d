"""Per-block weights, as the LoRA Block Weight and SuperMerger extensions write them.

A block-weight list has one number per block of the family's layout (`Family.blocks`): 17 for SD1 / SD2
(BASE = the text encoder, IN01 IN02 IN04 IN05 IN07 IN08, M00, OUT03 ... OUT11: the UNet blocks that hold
attention) and 12 for SDXL (BASE, IN04 IN05 IN07 IN08, M00, OUT00 ... OUT05). The presets are the
extensions' names: NONE, ALL, INS, IND, INALL, MIDD, OUTD, OUTS, OUTALL, each a set of the layout's groups
(for SDXL the same names pick its blocks by depth). Layers outside the listed blocks (LoCon's outermost
convolutions, conv_in, time embedding) keep weight 1.

Flux.1 and Chroma LoRAs take SuperMerger's Flux list (`BLOCKIDFLUX`), 61 numbers: CLIP (CLIP-L, `lora_te1_`), T5
(`lora_te2_` / `lora_te3_`), IN (the input embedders: img_in, txt_in, time_in, vector_in, guidance_in, Chroma's
distilled_guidance_layer), D00 ... D18 (double blocks by index), S00 ... S37 (single blocks), OUT (final_layer);
of the presets, ALL and NONE.
"""

from __future__ import annotations

import re

from ..core.errors import UserError
from ..families import family_or_default, trained_families
from ..families.interface import DitParts

PRESETS = {
    "NONE": (), "ALL": ("base", "in_shallow", "in_deep", "mid", "out_deep", "out_shallow"),
    "INS": ("base", "in_shallow"), "IND": ("base", "in_deep"), "INALL": ("base", "in_shallow", "in_deep"),
    "MIDD": ("base", "in_deep", "mid", "out_deep"), "OUTD": ("base", "out_deep"), "OUTS": ("base", "out_shallow"),
    "OUTALL": ("base", "out_deep", "out_shallow"),
}
_DIFFUSERS_BLOCK = re.compile(r"^lora_unet_(down|up)_blocks_(\d+)_(attentions|resnets|downsamplers|upsamplers)_(\d+)")
_ORIGINAL_BLOCK = re.compile(r"^lora_unet_(input|output)_blocks_(\d+)_")
_FLUX_BLOCK = re.compile(r"^lora_unet_(double|single)_blocks_(\d+)_")
_FLUX_INPUTS = re.compile(r"^lora_unet_(img_in|txt_in|time_in|vector_in|guidance_in|distilled_guidance_layer)(_|$)")
_ORDER = ("BASE", "CLIP", "T5", "IN", "D", "S", "M", "OUT")


def _flux_block_of(name: str) -> str | None:
    if name.startswith("lora_te1_"):
        return "CLIP"
    if name.startswith(("lora_te2_", "lora_te3_")):
        return "T5"
    match = _FLUX_BLOCK.match(name)
    if match:
        return f"{'D' if match[1] == 'double' else 'S'}{int(match[2]):02d}"
    if name.startswith("lora_unet_final_layer_"):
        return "OUT"
    return "IN" if _FLUX_INPUTS.match(name) else None


def block_of(name: str, arch: str | None = None) -> str | None:
    """The block id (BASE, IN05, M00, OUT03, ...; for a Flux family CLIP, D03, S12, ...) of a kohya module name
    in a LoRA for `arch`, or None outside the blocks."""
    if isinstance(family_or_default(arch).parts, DitParts):
        return _flux_block_of(name)
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
    """Sort key: BASE, IN00 ... IN11, M00, OUT00 ... OUT11 (Flux: CLIP, T5, IN, D00 ..., S00 ..., OUT), then
    anything else."""
    for rank, prefix in enumerate(_ORDER):
        if block.startswith(prefix):
            digits = block[len(prefix):]
            if digits.isdigit() or not digits:
                return rank, int(digits or 0)
    return len(_ORDER), 0


def parse_block_weights(text: str, arch: str | None) -> dict[str, float]:
    """Block id -> weight from a preset name or a comma-separated list of 17 (SD1/SD2), 12 (SDXL) or 61 (Flux)
    numbers, for family `arch` (the default family's layout when None)."""
    found = family_or_default(arch)
    layout, blocks = found.blocks, found.blocks.blocks
    name = text.strip().upper()
    preset = PRESETS.get(name)
    if preset is not None:
        groups = dict(layout.groups)
        if name not in ("ALL", "NONE") and not all(group in groups for group in preset):
            raise UserError(f"Block weights {text!r}: that preset names UNet blocks, which {found.names.title} has "
                            f"not; give ALL, NONE or {len(blocks)} comma-separated numbers ({', '.join(blocks)}).")
        chosen = set(blocks) if name == "ALL" else {block for group in preset for block in groups[group]}
        return {block: float(block in chosen) for block in blocks}
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != len(blocks):
        sharing = " / ".join(dict.fromkeys(row.names.label for row in trained_families() if row.blocks == layout))
        raise UserError(f"Block weights {text!r}: give a preset ({', '.join(PRESETS)}) or {len(blocks)} "
                        f"comma-separated numbers for {sharing} ({', '.join(blocks)}).")
    return dict(zip(blocks, values))


def module_weight(name: str, weights: dict[str, float] | None, arch: str | None = None) -> float:
    """The block weight of a module of a LoRA for `arch` (1 without block weights or outside the listed blocks)."""
    if weights is None:
        return 1.0
    return weights.get(block_of(name, arch) or "", 1.0)
