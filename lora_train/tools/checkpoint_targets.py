"""Where each kohya LoRA module lands in a single-file checkpoint (original ldm / sgm layout).

`checkpoint_targets` maps kohya module names to the checkpoint weight they change, and for the
fused attention of OpenCLIP text encoders (SD2's, SDXL's second) to the rows of `in_proj_weight`
that hold q, k or v:
- UNet `model.diffusion_model.<path>.weight`: by the family's `unet_lora_names`, SD1 / SD2 LoRAs name
  modules by the diffusers path (`lora_unet_down_blocks_0_attentions_0_proj_in`), SDXL ones by the
  original (sgm) path (`lora_unet_input_blocks_4_1_proj_in`); `unet_layout` converts with the UNet's
  block layout.
- Hugging Face CLIP `<prefix>text_model.encoder.layers.N.self_attn.q_proj.weight` ->
  `lora_te[1]_text_model_encoder_layers_N_self_attn_q_proj` (old files without `text_model.` too).
- OpenCLIP `<prefix>transformer.resblocks.N.attn.in_proj_weight` rows [0:d], [d:2d], [2d:3d] -> q, k, v;
  `attn.out_proj` -> `self_attn_out_proj`, `mlp.c_fc` -> `mlp_fc1`, `mlp.c_proj` -> `mlp_fc2`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..families import family
from ..families.stable_diffusion import UNET_PREFIX
from ..models.unet_layout import block_prefixes, to_diffusers

_OPEN_CLIP_LAYER = {"attn.out_proj.weight": "self_attn_out_proj", "mlp.c_fc.weight": "mlp_fc1",
                    "mlp.c_proj.weight": "mlp_fc2"}


@dataclass(frozen=True)
class Target:
    """A checkpoint weight, or the rows [start:stop] of it, that one LoRA module changes."""

    key: str
    rows: slice | None = None


def _unet_targets(shapes: Mapping[str, torch.Size], arch: str, unet_config: Mapping[str, Any]) -> dict[str, Target]:
    prefixes = block_prefixes(unet_config)
    diffusers_names = family(arch).parts.unet_lora_names == "diffusers"
    targets = {}
    for key, shape in shapes.items():
        if not (key.startswith(UNET_PREFIX) and key.endswith(".weight") and len(shape) in (2, 4)):
            continue
        path = key[len(UNET_PREFIX):-len(".weight")]
        if diffusers_names:
            try:
                path = to_diffusers(path, prefixes)
            except KeyError:
                continue
        targets["lora_unet_" + path.replace(".", "_")] = Target(key)
    return targets


def _text_encoder_targets(shapes: Mapping[str, torch.Size], arch: str) -> dict[str, Target]:
    specs = family(arch).parts.text_encoders
    names = ("lora_te",) if len(specs) == 1 else ("lora_te1", "lora_te2")
    targets = {}
    for spec, name in zip(specs, names):
        for key, shape in shapes.items():
            if not key.startswith(spec.ldm_prefix) or len(shape) != 2:
                continue
            rest = key[len(spec.ldm_prefix):]
            if not spec.open_clip:
                path = rest.removesuffix(".weight")
                if path != rest:
                    path = path if path.startswith("text_model.") else "text_model." + path
                    targets[f"{name}_{path.replace('.', '_')}"] = Target(key)
                continue
            parts = rest.split(".")
            if len(parts) < 4 or parts[:2] != ["transformer", "resblocks"]:
                continue
            layer = f"{name}_text_model_encoder_layers_{parts[2]}_"
            tail = ".".join(parts[3:])
            if tail == "attn.in_proj_weight":
                width = shape[0] // 3
                for index, projection in enumerate(("q", "k", "v")):
                    targets[f"{layer}self_attn_{projection}_proj"] = Target(key, slice(index * width,
                                                                                       (index + 1) * width))
            elif tail in _OPEN_CLIP_LAYER:
                targets[layer + _OPEN_CLIP_LAYER[tail]] = Target(key)
    return targets


def checkpoint_targets(shapes: Mapping[str, torch.Size], arch: str, unet_config: Mapping[str, Any]
                       ) -> dict[str, Target]:
    """kohya module name -> the checkpoint weight (and rows) it changes, for every weight a LoRA can adapt."""
    return {**_unet_targets(shapes, arch, unet_config), **_text_encoder_targets(shapes, arch)}
