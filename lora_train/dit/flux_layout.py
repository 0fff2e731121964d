"""The Flux transformer in two key layouts, both ways: diffusers' (`FluxTransformer2DModel`,
`ChromaTransformer2DModel`) and Black Forest Labs' single files (`double_blocks.0.img_attn.qkv.weight`).

One table (`bfl_modules`) names, for every BFL module, the diffusers modules whose outputs it stacks:
`img_attn.qkv` is `attn.to_q`, `to_k`, `to_v` one after the other (rows), a single block's `linear1` is
q, k, v and `proj_mlp`. The final layer's modulation holds (shift, scale) where diffusers holds (scale,
shift). The converters and the fused LoRA names of `lora_file` all come from this one table, and the
conversion to diffusers is checked against diffusers' own converter (tests/test_flux_layout.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..core.errors import UserError

BFL_PREFIXES = ("model.diffusion_model.", "diffusion_model.")  # all-in-one files; Forge / ComfyUI saves


@dataclass(frozen=True)
class Fused:
    """One BFL module and the diffusers modules it stacks along its output rows."""

    bfl: str
    parts: tuple[str, ...]
    kind: str = "linear"  # linear: weight and bias | norm: BFL `scale` is diffusers' `weight` | swapped: halves

    def params(self) -> tuple[tuple[str, str], ...]:
        """(BFL parameter, diffusers parameter) names."""
        return (("scale", "weight"),) if self.kind == "norm" else (("weight", "weight"), ("bias", "bias"))


def _pairs(prefix: str, target: str, names: Mapping[str, tuple[str, ...] | str], kind: str = "linear") -> list[Fused]:
    return [Fused(prefix + bfl, tuple(target + part for part in ((parts,) if isinstance(parts, str) else parts)), kind)
            for bfl, parts in names.items()]


_DOUBLE = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"), "img_attn.proj": "attn.to_out.0",
           "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
           "txt_attn.proj": "attn.to_add_out", "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
           "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2"}
_DOUBLE_MODULATION = {"img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear"}
_DOUBLE_NORMS = {"img_attn.norm.query_norm": "attn.norm_q", "img_attn.norm.key_norm": "attn.norm_k",
                 "txt_attn.norm.query_norm": "attn.norm_added_q", "txt_attn.norm.key_norm": "attn.norm_added_k"}
_SINGLE = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear2": "proj_out"}
_SINGLE_NORMS = {"norm.query_norm": "attn.norm_q", "norm.key_norm": "attn.norm_k"}
_FLUX_EMBEDDERS = {"time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
                   "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
                   "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
                   "vector_in.out_layer": "time_text_embed.text_embedder.linear_2"}
_GUIDANCE = {"guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
             "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2"}
_COMMON = {"txt_in": "context_embedder", "img_in": "x_embedder", "final_layer.linear": "proj_out"}
_APPROXIMATOR = "distilled_guidance_layer."


def bfl_modules(config: Mapping[str, Any], chroma: bool) -> list[Fused]:
    """Every module of a transformer with this diffusers `config`, in BFL's names (Chroma: no per-block
    modulation, a `distilled_guidance_layer` instead of the time / vector / guidance embedders)."""
    modules = _pairs("", "", _COMMON)
    if chroma:
        modules += _pairs(_APPROXIMATOR, _APPROXIMATOR, {"in_proj": "in_proj", "out_proj": "out_proj"})
        for i in range(config["approximator_layers"]):
            modules += _pairs(f"{_APPROXIMATOR}layers.{i}.", f"{_APPROXIMATOR}layers.{i}.",
                              {"in_layer": "linear_1", "out_layer": "linear_2"})
            modules += _pairs(_APPROXIMATOR, _APPROXIMATOR, {f"norms.{i}": f"norms.{i}"}, "norm")
    else:
        modules += _pairs("", "", {**_FLUX_EMBEDDERS, **(_GUIDANCE if config["guidance_embeds"] else {})})
        modules.append(Fused("final_layer.adaLN_modulation.1", ("norm_out.linear",), "swapped"))
    for i in range(config["num_layers"]):
        bfl, diffusers = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        modules += _pairs(bfl, diffusers, {**_DOUBLE, **({} if chroma else _DOUBLE_MODULATION)})
        modules += _pairs(bfl, diffusers, _DOUBLE_NORMS, "norm")
    for i in range(config["num_single_layers"]):
        bfl, diffusers = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        modules += _pairs(bfl, diffusers, {**_SINGLE, **({} if chroma else {"modulation.lin": "norm.linear"})})
        modules += _pairs(bfl, diffusers, _SINGLE_NORMS, "norm")
    return modules


def swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_bfl(state_dict: Mapping[str, torch.Tensor], modules: list[Fused], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers transformer state dict in BFL's layout (fused tensors are new; the others are the same)."""
    out: dict[str, torch.Tensor] = {}
    for module in modules:
        for bfl_param, param in module.params():
            parts = [state_dict[f"{part}.{param}"] for part in module.parts]
            tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
            out[f"{prefix}{module.bfl}.{bfl_param}"] = swap_halves(tensor) if module.kind == "swapped" else tensor
    return out


def from_bfl(read: Callable[[str], torch.Tensor], modules: list[Fused], shapes: Mapping[str, torch.Size],
             prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(diffusers key, tensor) for every tensor of the model whose parameter `shapes` are given, reading each
    BFL tensor once with `read(name)` and splitting fused ones by rows (views: no copy)."""
    for module in modules:
        for bfl_param, param in module.params():
            name = f"{prefix}{module.bfl}.{bfl_param}"
            tensor = read(name)
            keys = [f"{part}.{param}" for part in module.parts]
            rows = [shapes[key][0] for key in keys]
            if tensor.shape[0] != sum(rows):
                raise UserError(f"{name} has {tensor.shape[0]} rows where this transformer needs {sum(rows)}.")
            if module.kind == "swapped":
                tensor = swap_halves(tensor)
            yield from zip(keys, tensor.split(rows, dim=0))


def bfl_names(modules: list[Fused], prefix: str = "") -> list[str]:
    """The tensor names a BFL file of these modules has."""
    return [f"{prefix}{module.bfl}.{bfl_param}" for module in modules for bfl_param, _ in module.params()]


def fused_lookup(modules: list[Fused]) -> dict[str, tuple[Fused, int]]:
    """diffusers module path -> (the BFL module holding it, its place among the stacked parts)."""
    return {part: (module, index) for module in modules for index, part in enumerate(module.parts)}
