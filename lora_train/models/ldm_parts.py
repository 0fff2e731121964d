"""The parts of an ldm / sgm checkpoint -> diffusers state dicts, with diffusers' own converters.

diffusers' converters drop names they do not recognise, so each function first checks the
checkpoint's names against the exact set its model would have in the original layout (built
with `to_ldm` from the empty model): a tensor that belongs to no weight is an error too. Extras
real files carry and nothing uses (CLIP's `position_ids`, OpenCLIP's `logit_scale`, SD2's
`text_projection` and its unused last block) are allowed and dropped.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)

from ..families.interface import TextEncoderSpec
from ..families.stable_diffusion import UNET_PREFIX
from .to_ldm import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm
from .weights import report_mismatch

Tensors = Mapping[str, torch.Tensor]
Config = Mapping[str, Any]


def unet_state_dict(tensors: Tensors, config: Config, model: torch.nn.Module, what: str, advice: str) -> dict:
    """`model.diffusion_model.*` -> UNet2DConditionModel names."""
    _refuse_unknown(tensors, unet_to_ldm(model.state_dict(), config, UNET_PREFIX), what, advice)
    return convert_ldm_unet_checkpoint(dict(tensors), dict(config))


def vae_state_dict(tensors: Tensors, prefix: str, config: Config, model: torch.nn.Module, what: str,
                   advice: str) -> dict:
    """`<prefix>encoder.down.0.block.0...` (prefix `first_stage_model.`, `vae.` or none) -> AutoencoderKL names."""
    _refuse_unknown(tensors, vae_to_ldm(model.state_dict(), config, prefix), what, advice)
    return convert_ldm_vae_checkpoint(dict(tensors), dict(config))


def text_encoder_state_dict(tensors: Tensors, spec: TextEncoderSpec, model: torch.nn.Module, what: str,
                            advice: str) -> dict:
    """One text encoder's tensors (under `spec.ldm_prefix`) -> the transformers model's names."""
    prefix = spec.ldm_prefix
    if spec.open_clip:
        expected = open_clip_to_ldm(model.state_dict(), prefix)
        extras = {prefix + "logit_scale", prefix + "text_projection"} - expected.keys()
        unused = f"{prefix}transformer.resblocks.{model.config.num_hidden_layers}." if spec.unused_last_layer else None
        tensors = {key: value for key, value in tensors.items()
                   if key not in extras and not (unused and key.startswith(unused))}
    else:
        tensors = {_with_text_model(key, prefix): value for key, value in tensors.items()}
        expected = clip_to_ldm(model.state_dict(), prefix)
    _refuse_unknown(tensors, expected, what, advice)
    converted = (convert_open_clip_checkpoint(model, tensors, prefix=prefix) if spec.open_clip
                 else convert_ldm_clip_checkpoint(tensors, remove_prefix=prefix))
    flat = not hasattr(model, "text_model")  # transformers >= 5.6 flattened CLIPTextModel
    return {key.removeprefix("text_model.") if flat else key: value for key, value in converted.items()
            if not key.endswith("position_ids")}


def _with_text_model(key: str, prefix: str) -> str:
    """Old checkpoints (as the WebUI also accepts) lack the `text_model.` level."""
    rest = key[len(prefix):]
    return key if rest.startswith("text_model.") else f"{prefix}text_model.{rest}"


def _refuse_unknown(tensors: Tensors, expected: Mapping[str, Any], what: str, advice: str) -> None:
    report_mismatch(what, advice, **{"not part of the model": tensors.keys() - expected.keys()})
