"""diffusers state dicts -> the original (ldm / sgm) key layout of single-file checkpoints.

The inverse of diffusers' `single_file_utils` converters, used to write checkpoints the way
users' files in the WebUI's `models/Stable-diffusion` look: UNet blocks by their original
numbers (`unet_layout`), the VAE as `encoder.down.0.block.0` with conv 1x1 attention, Hugging
Face CLIP under a `transformer.text_model.` prefix, OpenCLIP as `resblocks` with fused `in_proj`.
Works on meta tensors too (only names and shapes are needed to check configs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Mapping

import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

from ..families import family
from ..families.stable_diffusion import UNET_PREFIX, VAE_PREFIX
from .unet_layout import block_prefixes, to_original

StateDict = Mapping[str, torch.Tensor]

_VAE_TOP_LEVEL = DIFFUSERS_TO_LDM_MAPPING["vae"]
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPEN_CLIP_TOP_LEVEL = {diffusers.removeprefix("text_model."): ldm
                        for diffusers, ldm in DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"].items()}
_OPEN_CLIP_LAYER = [(diffusers, ldm) for diffusers, ldm in DIFFUSERS_TO_LDM_MAPPING["openclip"]["transformer"].items()
                    if not diffusers.startswith("transformer.")]


def unet_to_ldm(state_dict: StateDict, config: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """A diffusers UNet2DConditionModel state dict -> `<prefix>input_blocks.1.0.in_layers.0.weight`, ..."""
    prefixes = block_prefixes(config)
    return {prefix + to_original(key, prefixes): value for key, value in state_dict.items()}


def _vae_prefixes(config: Mapping[str, Any]) -> dict[str, str]:
    levels, per_level = len(config["down_block_types"]), config["layers_per_block"]
    mapping: dict[str, str] = {}
    for i in range(levels):
        for j in range(per_level):
            mapping[f"encoder.down_blocks.{i}.resnets.{j}"] = f"encoder.down.{i}.block.{j}"
        mapping[f"encoder.down_blocks.{i}.downsamplers.0"] = f"encoder.down.{i}.downsample"
        for j in range(per_level + 1):
            mapping[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.up.{levels - 1 - i}.block.{j}"
        mapping[f"decoder.up_blocks.{i}.upsamplers.0"] = f"decoder.up.{levels - 1 - i}.upsample"
    for part in ("encoder", "decoder"):
        mapping[f"{part}.mid_block.resnets.0"] = f"{part}.mid.block_1"
        mapping[f"{part}.mid_block.resnets.1"] = f"{part}.mid.block_2"
        mapping[f"{part}.mid_block.attentions.0"] = f"{part}.mid.attn_1"
    return mapping


def _vae_key(key: str, value: torch.Tensor, prefixes: Mapping[str, str]) -> tuple[str, torch.Tensor]:
    if key in _VAE_TOP_LEVEL:
        return _VAE_TOP_LEVEL[key], value
    head = next(p for p in sorted(prefixes, key=len, reverse=True) if key.startswith(p + "."))
    rest = key[len(head) + 1:]
    if ".attentions." in head:
        layer, _, param = rest.rpartition(".")
        rest = f"{_VAE_ATTENTION[layer]}.{param}"
        if value.ndim == 2:  # ldm's attention uses 1x1 convolutions
            value = value[:, :, None, None]
    elif ".resnets." in head:
        rest = rest.replace("conv_shortcut", "nin_shortcut")
    return f"{prefixes[head]}.{rest}", value


def vae_to_ldm(state_dict: StateDict, config: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict -> `<prefix>encoder.down.0.block.0.norm1.weight`, ..."""
    prefixes = _vae_prefixes(config)
    converted = (_vae_key(key, value, prefixes) for key, value in state_dict.items())
    return {prefix + key: value for key, value in converted}


def clip_to_ldm(state_dict: StateDict, prefix: str) -> dict[str, torch.Tensor]:
    """A Hugging Face CLIP text model -> `<prefix>text_model.*`, with the `position_ids` buffer that
    transformers < 4.31 (the WebUI's) saved, as real checkpoints have it."""
    converted = {f"{prefix}text_model.{key.removeprefix('text_model.')}": value for key, value in state_dict.items()}
    positions = converted[f"{prefix}text_model.embeddings.position_embedding.weight"].shape[0]
    converted[f"{prefix}text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return converted


def open_clip_to_ldm(state_dict: StateDict, prefix: str) -> dict[str, torch.Tensor]:
    """A Hugging Face CLIP text model (with or without projection) -> OpenCLIP's text tower under
    `prefix`: `transformer.resblocks.N.attn.in_proj_weight` (q, k, v fused), `text_projection`
    stored as `x @ text_projection`, `positional_embedding`, `ln_final`."""
    flat = {key.removeprefix("text_model."): value for key, value in state_dict.items()}
    converted: dict[str, torch.Tensor] = {}
    for key, value in flat.items():
        if key in _OPEN_CLIP_TOP_LEVEL:
            converted[prefix + _OPEN_CLIP_TOP_LEVEL[key]] = value.T if key == "text_projection.weight" else value
        elif ".self_attn." in key and key.rsplit(".", 2)[-2] in ("q_proj", "k_proj", "v_proj"):
            continue  # fused below
        else:
            converted[prefix + "transformer." + _open_clip_layer_key(key)] = value
    layers = {key.split(".")[2] for key in flat if key.startswith("encoder.layers.")}
    for index in sorted(layers, key=int):
        attention = f"encoder.layers.{index}.self_attn"
        for param in ("weight", "bias"):
            fused = [flat[f"{attention}.{name}.{param}"] for name in ("q_proj", "k_proj", "v_proj")]
            converted[f"{prefix}transformer.resblocks.{index}.attn.in_proj_{param}"] = torch.cat(fused)
    return converted


def _open_clip_layer_key(key: str) -> str:
    key = "text_model." + key
    for diffusers, ldm in _OPEN_CLIP_LAYER:
        key = key.replace(diffusers, ldm)
    return key


def model_to_ldm(arch: str, unet: torch.nn.Module, vae: torch.nn.Module, text_encoders: Sequence[torch.nn.Module],
                 scheduler: Any) -> dict[str, torch.Tensor]:
    """A whole diffusers model of family `arch` in the original single-file key layout, with the extras real
    files carry (the DDPM schedule buffers where the family's have them (SD1/SD2), CLIP's position_ids,
    OpenCLIP's logit_scale and, for SD2, the last OpenCLIP block that SD2 does not use)."""
    parts = family(arch).parts
    state = unet_to_ldm(unet.state_dict(), unet.config, UNET_PREFIX)
    state.update(vae_to_ldm(vae.state_dict(), vae.config, VAE_PREFIX))
    for spec, encoder in zip(parts.text_encoders, text_encoders):
        if not spec.open_clip:
            state.update(clip_to_ldm(encoder.state_dict(), spec.ldm_prefix))
            continue
        tower = open_clip_to_ldm(encoder.state_dict(), spec.ldm_prefix)
        width = encoder.config.hidden_size
        tower.setdefault(spec.ldm_prefix + "text_projection", torch.eye(width))
        tower[spec.ldm_prefix + "logit_scale"] = torch.tensor(math.log(100.0))
        if spec.unused_last_layer:
            tower.update(_repeat_last_block(tower, spec.ldm_prefix, encoder.config.num_hidden_layers))
        state.update(tower)
    if parts.schedule_buffers:
        alphas_cumprod = scheduler.alphas_cumprod
        state.update(betas=scheduler.betas, alphas_cumprod=alphas_cumprod,
                     alphas_cumprod_prev=torch.cat([torch.ones(1), alphas_cumprod[:-1]]))
    return {key: value.detach().contiguous() for key, value in state.items()}


def _repeat_last_block(tower: dict[str, torch.Tensor], prefix: str, layers: int) -> dict[str, torch.Tensor]:
    """OpenCLIP's final block, which SD2 checkpoints hold but never use (a copy of the one before)."""
    last = f"{prefix}transformer.resblocks.{layers - 1}."
    return {f"{prefix}transformer.resblocks.{layers}.{key[len(last):]}": value.clone()
            for key, value in tower.items() if key.startswith(last)}
