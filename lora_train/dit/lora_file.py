"""The Flux LoRA file in kohya's format, which Forge, ComfyUI, diffusers and Civitai read.

Names are `lora_unet_` + the BFL module path with `_` (`lora_unet_double_blocks_0_img_attn_qkv`,
`lora_unet_single_blocks_3_linear1`, `..._img_mod_lin`, `..._modulation_lin`), and `lora_te1_` + CLIP-L's
path under transformers 4's layout (`lora_te1_text_model_encoder_layers_0_mlp_fc1`), as kohya's
`networks/lora_flux.py` names them.

The LoRA trains on diffusers' separate q / k / v (and a single block's proj_mlp); BFL fuses them into one
linear, so their LoRAs are fused exactly: down = the parts' downs stacked (rank = the sum of their ranks),
up = block-diagonal of their ups (a part without a LoRA contributes zero rows), and alpha scaled with the
rank so that alpha / rank, the scale every loader applies (Forge and ComfyUI: alpha / down's rows), is the
parts' own. Where parts' scales differ, each up is rescaled to the largest. This is kohya's `split_qkv`
layout, except that kohya keeps one part's alpha for the fused rank, which loaders then apply at a third
(a quarter for linear1) of the trained strength. diffusers' loader recognises the block-diagonal up and
splits it back exactly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from ..adapters.layers import LayerWeights, lora_layers, read_layer
from ..adapters.spec import LoraSpec
from ..adapters.targets import text_encoder_root
from ..families import family
from ..kohya.metadata import TrainingRun, build_metadata
from ..kohya.names import ALPHA, DOWN, UP
from ..kohya.state import SAVE_DTYPES
from ..train.lora_writer import LoraWriter
from .flux_layout import Fused, bfl_modules, fused_lookup

def fuse(module: Fused, parts: dict[int, LayerWeights], rows: list[int]) -> LayerWeights:
    """One LoRA for `module` from the LoRAs of its parts (index -> weights; `rows`: each part's output rows)."""
    if len(module.parts) == 1:
        weights = parts[0]
    else:
        scales = {index: weights.alpha / weights.rank for index, weights in parts.items()}
        scale = max(scales.values())
        ranks = [parts[index].rank if index in parts else 0 for index in range(len(rows))]
        first = next(iter(parts.values()))
        up = first.up.new_zeros(sum(rows), sum(ranks))
        for index, weights in parts.items():
            row, col = sum(rows[:index]), sum(ranks[:index])
            up[row:row + rows[index], col:col + ranks[index]] = weights.up * (scales[index] / scale)
        down = torch.cat([parts[index].down for index in sorted(parts)], dim=0)
        weights = LayerWeights(down, up, scale * sum(ranks))
    # BFL's final modulation holds (shift, scale), diffusers' (scale, shift)
    return _swapped(weights) if module.kind == "swapped" else weights


def _swapped(weights: LayerWeights) -> LayerWeights:
    first, second = weights.up.chunk(2, dim=0)
    return LayerWeights(weights.down, torch.cat([second, first], dim=0), weights.alpha)


def split(module: Fused, weights: LayerWeights, rows: list[int]) -> dict[int, LayerWeights]:
    """The inverse of `fuse`, exact for any fused LoRA: a block-diagonal up (ours, kohya's split_qkv) gives each
    part its own rows of down; any other (a LoRA trained on the fused layer) gives each part the whole down and
    its rows of up, at the fused rank."""
    if module.kind == "swapped":
        weights = _swapped(weights)
    if len(module.parts) == 1:
        return {0: weights}
    parts, rank, scale = len(rows), weights.rank, weights.alpha / weights.rank
    offsets = [sum(rows[:index]) for index in range(parts)]
    blocks = [weights.up[offset:offset + count] for offset, count in zip(offsets, rows)]
    if rank % parts == 0:
        width = rank // parts
        outside = [torch.cat([block[:, :index * width], block[:, (index + 1) * width:]], dim=1)
                   for index, block in enumerate(blocks)]
        if not any(part.any() for part in outside):
            return {index: LayerWeights(weights.down[index * width:(index + 1) * width],
                                        block[:, index * width:(index + 1) * width], scale * width)
                    for index, block in enumerate(blocks)}
    return {index: LayerWeights(weights.down, block, weights.alpha) for index, block in enumerate(blocks)}


def _save(state: dict, name: str, weights: LayerWeights, dtype: torch.dtype) -> None:
    state[f"{name}.{DOWN}"] = weights.down.detach().to("cpu", dtype).contiguous()
    state[f"{name}.{UP}"] = weights.up.detach().to("cpu", dtype).contiguous()
    state[f"{name}.{ALPHA}"] = torch.tensor(float(weights.alpha), dtype=torch.float32)


def flux_lora_state_dict(transformer: nn.Module, clip: nn.Module | None, arch: str,
                         save_precision: str = "fp16") -> dict[str, torch.Tensor]:
    """The kohya-format tensors of the LoRA layers in the transformer (fused to BFL's modules) and in CLIP-L."""
    dtype = SAVE_DTYPES[save_precision]
    lookup = fused_lookup(bfl_modules(transformer.config, chroma=family(arch).parts.distilled_modulation))
    modules = dict(transformer.named_modules())
    grouped: dict[Fused, dict[int, LayerWeights]] = defaultdict(dict)
    for path, layer in lora_layers(transformer):
        module, index = lookup[path]
        grouped[module][index] = read_layer(layer)
    state: dict[str, torch.Tensor] = {}
    for module, parts in grouped.items():
        rows = [modules[part].out_features for part in module.parts]
        _save(state, "lora_unet_" + module.bfl.replace(".", "_"), fuse(module, parts, rows), dtype)
    root = text_encoder_root(clip) if clip is not None else ""
    for path, layer in lora_layers(clip):
        _save(state, "lora_te1_" + (root + path).replace(".", "_"), read_layer(layer), dtype)
    return state


@dataclass
class FluxLoraWriter(LoraWriter):
    """The run kit's writer, with Flux's tensors and header."""

    settings: dict[str, str] = field(default_factory=dict)  # the flow settings, as kohya records them (ss_*)

    def tensors(self) -> dict[str, torch.Tensor]:
        base = self.base
        return flux_lora_state_dict(base.transformer, base.clip, base.arch, self.save_precision)

    def metadata(self, network: LoraSpec, run: TrainingRun) -> dict[str, str]:
        metadata = build_metadata(network, run)
        metadata.pop("modelspec.prediction_type")  # epsilon / v: neither is flow matching
        return {**metadata, "ss_model_type": self.base.family.parts.model_type, **self.settings}
