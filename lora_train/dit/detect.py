"""Which Flux-family model a single file holds, and its transformer's config, from tensor names and shapes
alone (torch-free: a key -> shape mapping, as a safetensors header gives it).

- Flux.1-dev and Flux.1-Krea-dev have the guidance embedding (`guidance_in`), Flux.1-schnell does not;
  Chroma has the distilled modulation network (`distilled_guidance_layer`) and no per-block modulation.
- Fill (384 input channels) and Depth / Canny (128) are refused by `img_in`'s width. Kontext has
  exactly dev's tensors, so only its file name or header can tell: a name or header saying "kontext"
  is refused.
- Flux.2, Z-Image and Qwen-Image files are refused by name, with tensors only they have.
The transformer may be bare or under `model.diffusion_model.` / `diffusion_model.`; an all-in-one file
also carries the autoencoder (`vae.`, `first_stage_model.`), CLIP-L and T5 (`text_encoders.*.transformer.`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..families import Family, trained_families
from ..families.interface import DitParts
from ..families.recognise import checkpoint_family
from .flux_layout import BFL_PREFIXES

Shapes = Mapping[str, Sequence[int]]
TRAINED = "lora_train trains Flux.1 (dev, schnell, Krea) and Chroma LoRAs"
_MARKER = "double_blocks.0.img_attn.norm.key_norm.scale"
_OTHER_DIT = {  # family -> tensor names (under any BFL prefix) only its files have
    "Flux.2": ("double_stream_modulation_img.lin.weight", "single_stream_modulation.lin.weight"),
    "Z-Image": ("cap_embedder.0.weight", "layers.0.adaLN_modulation.0.weight"),
    "Qwen-Image": ("txt_norm.weight", "transformer_blocks.0.img_mod.1.weight"),
}
_VARIANT_CHANNELS = {384: "a Flux.1 Fill (inpainting) model", 128: "a Flux.1 Depth / Canny (control) model"}
PART_PREFIXES = {  # part -> prefixes it may have inside an all-in-one file, as the families declare them
    part.key: part.inside for row in trained_families(DitParts) for part in row.parts.separate}


@dataclass(frozen=True)
class FluxCheckpoint:
    """A Flux-family transformer found in a file."""

    family: Family  # Flux.1-dev, Flux.1-schnell or Chroma (families/flux.py)
    prefix: str  # of the transformer's tensor names: "" or model.diffusion_model. / diffusion_model.
    config: dict[str, Any]  # the diffusers transformer config its shapes give
    parts: dict[str, str] = field(default_factory=dict)  # ae / clip_l / t5xxl it also carries -> their prefix


def _under_any_prefix(shapes: Shapes, name: str) -> bool:
    return any(prefix + name in shapes for prefix in ("", *BFL_PREFIXES))


def refuse_other_dit(shapes: Shapes, path: Path) -> None:
    """A UserError when the file is a DiT family lora_train does not train (Flux.2, Z-Image, Qwen-Image)."""
    for family, names in _OTHER_DIT.items():
        if any(_under_any_prefix(shapes, name) for name in names):
            raise UserError(f"{path} is a {family} model, not Flux.1: {TRAINED}, and {family} is not supported "
                            "yet. Choose a Flux.1 or Chroma checkpoint as base model.")


def _count(shapes: Shapes, prefix: str, group: str) -> int:
    found = {int(m.group(1)) for key in shapes if (m := re.match(re.escape(prefix + group) + r"\.(\d+)\.", key))}
    if found and found != set(range(len(found))):
        missing = sorted(set(range(max(found) + 1)) - found)
        raise UserError(f"{group} {missing} are missing: the file is incomplete. Download it again.")
    return len(found)


def _rope_axes(head_dim: int, path: Path) -> tuple[int, int, int]:
    """Flux's rotary axes (16, 56, 56) of a 128-wide head, in the same proportions for other widths."""
    axes = (head_dim // 8, head_dim * 7 // 16, head_dim * 7 // 16)
    if sum(axes) != head_dim or any(axis % 2 for axis in axes):
        raise UserError(f"{path} has attention heads {head_dim} wide, which do not split into Flux's rotary axes "
                        "(16 + 56 + 56 of 128). Use a diffusers folder, whose config names them.")
    return axes


def transformer_config(shapes: Shapes, prefix: str, distilled_modulation: bool, path: Path) -> dict[str, Any]:
    """The diffusers config of the transformer under `prefix`, read from its shapes."""
    def shape(name: str) -> Sequence[int]:
        if prefix + name not in shapes:
            raise UserError(f"{path} looks like a Flux transformer but has no {prefix}{name}: the file is "
                            "incomplete or not a Flux.1 model. Download it again.")
        return shapes[prefix + name]

    hidden, in_channels = shape("img_in.weight")
    head_dim = shape("double_blocks.0.img_attn.norm.query_norm.scale")[0]
    if hidden % head_dim or shape("double_blocks.0.img_mlp.0.weight")[0] != 4 * hidden:
        raise UserError(f"{path} has a Flux-like transformer of unusual proportions (width {hidden}, heads "
                        f"{head_dim} wide, MLP {shape('double_blocks.0.img_mlp.0.weight')[0]}) that diffusers "
                        "cannot build.")
    config = dict(patch_size=1, in_channels=in_channels, out_channels=shape("final_layer.linear.weight")[0],
                  num_layers=_count(shapes, prefix, "double_blocks"),
                  num_single_layers=_count(shapes, prefix, "single_blocks"), attention_head_dim=head_dim,
                  num_attention_heads=hidden // head_dim, joint_attention_dim=shape("txt_in.weight")[1],
                  axes_dims_rope=_rope_axes(head_dim, path))
    if distilled_modulation:
        width, channels = shape("distilled_guidance_layer.in_proj.weight")
        return {**config, "approximator_num_channels": channels, "approximator_hidden_dim": width,
                "approximator_layers": _count(shapes, prefix + "distilled_guidance_layer.", "layers")}
    return {**config, "pooled_projection_dim": shape("vector_in.in_layer.weight")[1],
            "guidance_embeds": prefix + "guidance_in.in_layer.weight" in shapes}


def _parts(shapes: Shapes) -> dict[str, str]:
    return {part: prefix for part, prefixes in PART_PREFIXES.items() for prefix in prefixes
            if any(key.startswith(prefix) for key in shapes)}


def flux_checkpoint(shapes: Shapes, path: str | Path, metadata: Mapping[str, str] | None = None
                    ) -> FluxCheckpoint | None:
    """The Flux-family model in a file, None when the file has no Flux-family transformer; a UserError for
    the variants and families that are not trained (what the file is, and what to use instead)."""
    path = Path(path)
    refuse_other_dit(shapes, path)
    prefix = next((prefix for prefix in ("", *BFL_PREFIXES) if prefix + _MARKER in shapes), None)
    if prefix is None:
        return None
    channels = shapes.get(prefix + "img_in.weight", (0, 64))[1]
    if channels != 64:
        variant = _VARIANT_CHANNELS.get(channels, f"a Flux-like model with {channels} input channels")
        raise UserError(f"{path} is {variant}, not a text-to-image base model. {TRAINED}: train on the "
                        "Flux.1-dev or schnell checkpoint it was made from.")
    header = " ".join(f"{key} {value}" for key, value in (metadata or {}).items())
    if "kontext" in path.name.lower() or "kontext" in header.lower():
        raise UserError(f"{path} is a Flux.1 Kontext (image editing) model, which lora_train does not train: "
                        f"{TRAINED}. Choose Flux.1-dev, Krea-dev or schnell as base model.")
    family = checkpoint_family(shapes)
    config = transformer_config(shapes, prefix, family.parts.distilled_modulation, path)
    return FluxCheckpoint(family, prefix, config, _parts(shapes))
