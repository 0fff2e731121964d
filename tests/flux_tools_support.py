"""Helpers for the tools tests on Flux LoRAs (no tests here): tiny Flux / Chroma LoRA files with random weights
in our kohya format and in the other trainers' key styles, and the transformer weights they should give."""

from __future__ import annotations

from pathlib import Path

import torch
from flux_support import ALL_KINDS, merged_by_peft, with_lora
from safetensors.torch import save_file

from lora_train.adapters.layers import ADAPTER, lora_layers
from lora_train.dit.flux_layout import bfl_modules, to_bfl
from lora_train.dit.lora_file import flux_lora_state_dict
from lora_train.dit.targets import flux_target_names
from lora_train.families import family
from lora_train.fixtures.tiny_flux import tiny_flux
from lora_train.kohya.write import save_lora

# outside the blocks: BFL's img_in and txt_in (block IN), Flux.1's final_layer.adaLN_modulation.1 (OUT, its halves
# swapped), Chroma's distilled_guidance_layer.in_proj (IN)
OUTSIDE_BLOCKS = {"flux-dev": ("x_embedder", "context_embedder", "norm_out.linear"),
                  "chroma": ("x_embedder", "context_embedder", "distilled_guidance_layer.in_proj")}


def flux_header(arch: str) -> dict[str, str]:
    names = family(arch).names
    return {"ss_base_model_version": names.base_model_version, "modelspec.architecture": f"{names.modelspec}/lora",
            "ss_timestep_sampling": "shift", "ss_discrete_flow_shift": "3.1582", "ss_guidance_scale": "1.0"}


def flux_model(arch: str, rank: int, alpha: float, seed: int = 1, kinds=ALL_KINDS, single_blocks: str = "all"):
    """The tiny `arch` transformer with a random LoRA on the block linears of `kinds` and on img_in / final_layer."""
    transformer = tiny_flux(arch).transformer
    names = flux_target_names(transformer, kinds, single_blocks=single_blocks) + OUTSIDE_BLOCKS["chroma" if arch == "chroma" else "flux-dev"]
    return with_lora(transformer, names, rank, alpha, seed)


def save_flux_lora(folder: Path, name: str, arch: str, rank: int, alpha: float, seed: int = 1, **choices):
    """(path, model) of a kohya-format LoRA file as our trainer writes it."""
    model = flux_model(arch, rank, alpha, seed, **choices)
    path = save_lora(folder / f"{name}.safetensors", flux_lora_state_dict(model, None, arch, "fp32"),
                     flux_header(arch))
    return path, model


def other_style_file(folder: Path, style: str, arch: str, model) -> Path:
    """The LoRA of `model` as another trainer saves it: `diffusers` (transformer.<path>.lora_A, no alpha: the LoRA
    must have alpha = rank), `onetrainer` (lora_transformer_<path>.lora_down, alpha) or `bfl-peft`
    (diffusion_model.<BFL path>.lora_A, alpha)."""
    tensors: dict[str, torch.Tensor] = {}
    if style == "bfl-peft":
        for key, value in flux_lora_state_dict(model, None, arch, "fp32").items():
            name, _, suffix = key.partition(".")
            path = {module.bfl.replace(".", "_"): module.bfl for module in bfl_modules(
                model.config, chroma=arch == "chroma")}[name.removeprefix("lora_unet_")]
            suffix = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}.get(suffix, suffix)
            tensors[f"diffusion_model.{path}.{suffix}"] = value
    for path, layer in lora_layers(model) if style != "bfl-peft" else ():
        down, up = layer.lora_A[ADAPTER].weight.detach(), layer.lora_B[ADAPTER].weight.detach()
        if style == "diffusers":
            tensors |= {f"transformer.{path}.lora_A.weight": down, f"transformer.{path}.lora_B.weight": up}
        else:
            name = "lora_transformer_" + path.replace(".", "_")
            tensors |= {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
                        f"{name}.alpha": torch.tensor(layer.scaling[ADAPTER] * down.shape[0])}
    path = folder / f"{style}-{arch}.safetensors"
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    return path


def expected_bfl(arch: str, model, weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The BFL-layout weights of the base with `weight` x the model's LoRA, as its own layers compute it."""
    modules = bfl_modules(model.config, chroma=arch == "chroma")
    base = to_bfl(tiny_flux(arch).transformer.state_dict(), modules)
    merged = to_bfl(merged_by_peft(model), modules)
    return {key: base[key] + weight * (merged[key] - base[key]) for key in base}
