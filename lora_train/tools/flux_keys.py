"""Flux LoRA key styles of other trainers -> kohya's Flux names, grouped as `key_styles` groups them.

- diffusers / PEFT (`transformer.<diffusers path>.lora_A.weight` / `lora_B`: ai-toolkit, SimpleTuner,
  diffusers' `save_lora_weights`), with q / k / v (and a single block's proj_mlp) as separate modules;
- OneTrainer (`lora_transformer_<diffusers path with _>.lora_down.weight`), the same modules;
- BFL / PEFT (`diffusion_model.<BFL path>.lora_A.weight`, also under `model.diffusion_model.` or bare:
  what ComfyUI and ai-toolkit save), already in BFL's modules.
Separate parts of one BFL module are fused exactly as our writer fuses them (`dit.lora_file.fuse`: downs
stacked, ups block-diagonal, alpha / rank kept; a part the file leaves out adds zero rows: q / k / v are as
wide as the block's input, proj_mlp four times). CLIP-L (`text_encoder.<path>`) becomes `lora_te1_`, T5
(`text_encoder_2.<path>`) `lora_te2_`. Alpha is the `.alpha` tensor, or the rank (scale 1) as these
trainers save it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping

import torch

from ..dit.flux_layout import BFL_PREFIXES, Fused, bfl_modules, fused_lookup
from ..kohya.names import ALPHA, DOWN, UP

STYLES = {"diffusers-flux": "diffusers / PEFT (transformer.*: ai-toolkit, SimpleTuner)",
          "onetrainer-flux": "OneTrainer (lora_transformer_*)",
          "bfl-peft": "BFL / PEFT (diffusion_model.*: ComfyUI, ai-toolkit)"}
_SUFFIXES = {"lora_A.weight": DOWN, "lora_B.weight": UP, "lora_down.weight": DOWN, "lora_up.weight": UP,
             "lora.down.weight": DOWN, "lora.up.weight": UP, "alpha": ALPHA}
_TEXT = {"text_encoder.": "lora_te1_", "text_encoder_2.": "lora_te2_"}
_ONETRAINER = "lora_transformer_"
_BFL_ROOTS = ("double_blocks.", "single_blocks.", "img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.",
              "final_layer.", "distilled_guidance_layer.")
_INDEX = {"num_layers": r"(?<!single_)transformer_blocks[._](\d+)[._]", "num_single_layers": r"single_transformer_blocks[._](\d+)[._]",
          "approximator_layers": r"distilled_guidance_layer[._]layers[._](\d+)[._]"}


def _split(key: str) -> tuple[str, str] | None:
    """(module, kohya tensor suffix) of a LoRA tensor key, or None."""
    for suffix, kohya in _SUFFIXES.items():
        if key.endswith("." + suffix):
            return key[:-len(suffix) - 1], kohya
    return None


def flux_style(keys) -> str | None:
    """The other trainers' Flux style the keys are in (a `STYLES` key), or None."""
    modules = [split[0] for key in keys if (split := _split(key))]
    if any(module.startswith("transformer.") for module in modules):
        return "diffusers-flux"
    if any(module.startswith(_ONETRAINER) for module in modules):
        return "onetrainer-flux"
    if any(module.removeprefix(prefix).startswith(_BFL_ROOTS) for module in modules
           for prefix in (*BFL_PREFIXES, "")):
        return "bfl-peft"
    return None


def _lookup(paths: list[str], separator: str) -> dict[str, tuple[Fused, int]]:
    """diffusers path (with `separator` between levels) -> (BFL module, part index), for the blocks in `paths`."""
    text = "\n".join(paths)
    config = {name: max((int(index) for index in re.findall(pattern, text)), default=-1) + 1
              for name, pattern in _INDEX.items()}
    chroma = "distilled_guidance_layer" in text
    lookup = fused_lookup(bfl_modules({**config, "guidance_embeds": True}, chroma=chroma))
    return {path.replace(".", separator): found for path, found in lookup.items()}


def _weights(parts: Mapping[str, torch.Tensor]):
    from ..adapters.layers import LayerWeights  # peft: only for a file with separate q / k / v

    down = parts[DOWN]
    return LayerWeights(down, parts[UP], float(parts[ALPHA].item()) if ALPHA in parts else float(down.shape[0]))


def _fused(grouped: dict[str, dict[str, torch.Tensor]], prefix: str, separator: str
           ) -> dict[str, dict[str, torch.Tensor]]:
    """kohya-named modules of a file whose transformer modules (`prefix` + diffusers path) are diffusers'."""
    from ..dit.lora_file import fuse

    lookup = _lookup([name[len(prefix):] for name in grouped if name.startswith(prefix)], separator)
    by_module: dict[Fused, dict] = defaultdict(dict)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, parts in grouped.items():
        if not name.startswith(prefix):
            out[name] = parts
            continue
        found = lookup.get(name[len(prefix):])
        if found is None or not {DOWN, UP} <= parts.keys():
            out[name] = parts  # not a Flux layer: left as it is, so the tools name it
            continue
        by_module[found[0]][found[1]] = _weights(parts)
    for module, parts in by_module.items():
        width = next(iter(parts.values())).down.shape[1]
        rows = [parts[index].up.shape[0] if index in parts else width * (4 if part.endswith("proj_mlp") else 1)
                for index, part in enumerate(module.parts)]
        fused = fuse(module, parts, rows)
        out["lora_unet_" + module.bfl.replace(".", "_")] = {DOWN: fused.down, UP: fused.up,
                                                            ALPHA: torch.tensor(float(fused.alpha))}
    return out


def _kohya_name(module: str, style: str) -> str:
    for prefix, kohya in _TEXT.items():
        if module.startswith(prefix):
            path = module[len(prefix):]
            return kohya + (path if path.startswith("text_model.") else "text_model." + path).replace(".", "_")
    if style == "bfl-peft":
        for prefix in BFL_PREFIXES:
            module = module.removeprefix(prefix)
        return "lora_unet_" + module.replace(".", "_")
    return module


def from_flux_style(tensors: Mapping[str, torch.Tensor], style: str) -> dict[str, dict[str, torch.Tensor]]:
    """The tensors of a file in `style` as kohya-named modules: `{name: {"lora_down.weight": ..., ...}}`."""
    grouped: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, tensor in tensors.items():
        split = _split(key)
        if split is not None:
            grouped[_kohya_name(split[0], style)][split[1]] = tensor
    if style == "diffusers-flux":
        return _fused(grouped, "transformer.", ".")
    if style == "onetrainer-flux":
        return _fused(grouped, _ONETRAINER, "_")
    return dict(grouped)
