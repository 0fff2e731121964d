"""What `inspect` adds for a Flux.1 / Chroma LoRA: rank and alpha per module kind, which double and single blocks
it adapts, and the flow-matching settings its header records (kohya's `ss_timestep_sampling`, ...).

A module's kind is its name without the block index: `double img_attn_qkv`, `single linear1`, `CLIP-L
self_attn_q_proj`, or the layer outside the blocks (`img_in`, `final_layer_linear`, ...).
"""

from __future__ import annotations

import re
from typing import Any

from ..families.flux import FLOW_HEADER

_BLOCK = re.compile(r"^lora_unet_(double|single)_blocks_(\d+)_(.+)$")
_CLIP = re.compile(r"^lora_te1_text_model_encoder_layers_\d+_(.+)$")


def module_kind(name: str) -> str:
    """The kind of a kohya Flux module name (see the module docstring)."""
    if match := _BLOCK.match(name):
        return f"{match[1]} {match[3]}"
    if match := _CLIP.match(name):
        return f"CLIP-L {match[1]}"
    return name.removeprefix("lora_unet_")


def flux_summary(ranks: dict[str, int], alphas: dict[str, float], metadata: dict[str, str]) -> dict[str, Any]:
    """The Flux part of the report, from each module's rank and alpha and the header."""
    kinds: dict[str, list[str]] = {}
    for name in ranks:
        kinds.setdefault(module_kind(name), []).append(name)
    blocks: dict[str, set[int]] = {"double": set(), "single": set()}
    for name in ranks:
        if match := _BLOCK.match(name):
            blocks[match[1]].add(int(match[2]))
    return {
        "double_blocks": sorted(blocks["double"]),
        "single_blocks": sorted(blocks["single"]),
        "kinds": [{"kind": kind, "modules": len(names), "ranks": sorted({ranks[name] for name in names}),
                   "alphas": sorted({alphas[name] for name in names})} for kind, names in sorted(kinds.items())],
        "flow": {key.removeprefix("ss_"): metadata[key] for key in FLOW_HEADER if key in metadata},
    }


def _indices(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5" ("none" when empty)."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs) or "none"


def format_flux(summary: dict[str, Any]) -> list[str]:
    """The Flux part of the text report."""
    lines = [f"{'Double blocks:':<15}{_indices(summary['double_blocks'])}",
             f"{'Single blocks:':<15}{_indices(summary['single_blocks'])}", "Per module kind:"]
    width = max((len(row["kind"]) for row in summary["kinds"]), default=0)
    lines += [f"  {row['kind']:<{width}} {row['modules']:>4} modules  rank {', '.join(map(str, row['ranks']))}  "
              f"alpha {', '.join(f'{alpha:g}' for alpha in row['alphas'])}" for row in summary["kinds"]]
    if summary["flow"]:
        lines.append("Flow settings: " + ", ".join(f"{key} {value}" for key, value in summary["flow"].items()))
    return lines
