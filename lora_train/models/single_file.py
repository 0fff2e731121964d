"""Load SD1 / SD2 / SDXL from a single-file checkpoint in the original (ldm / sgm) layout, offline.

Part configs come from the `<checkpoint>.yaml` beside the file when there is one (the WebUI's
convention for non-standard shapes), else from the shipped configs of the detected
architecture. Parts are read, converted and assigned one at a time, so no more than one part is
ever held twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..core.errors import UserError
from ..families import family
from ..families.interface import TextEncoderSpec
from ..families.stable_diffusion import UNET_PREFIX, VAE_PREFIX
from .base_model import BaseModel
from .checkpoint_file import CheckpointFile, open_checkpoint
from .clip_tokenizer import fit_tokenizer, load_clip_tokenizer
from .detect import detect_checkpoint_arch
from .ldm_config import LdmConfig, find_ldm_config
from .ldm_parts import text_encoder_state_dict, unet_state_dict, vae_state_dict
from .prediction import declared_v_prediction, looks_like_v_prediction, training_scheduler
from .shipped import shipped_config, shipped_dir
from .vae_file import load_vae_file
from .weights import check_weights, empty_model, load_weights


@dataclass(frozen=True)
class PartConfigs:
    """The diffusers configs a checkpoint's parts are built with, and what to say when they do not fit."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder_folders: list[Path]  # config.json (and maybe a tokenizer) per text encoder
    advice: str


def part_configs(arch: str, v_prediction: bool, checkpoint: Path, ldm: LdmConfig | None,
                 tensors: Mapping[str, torch.Tensor]) -> PartConfigs:
    """From the checkpoint's ldm config (`<checkpoint>.yaml`) when it has one, else the shipped configs."""
    shipped = [shipped_dir(arch, v_prediction) / spec.subfolder for spec in family(arch).parts.text_encoders]
    if ldm is None:
        return PartConfigs(shipped_config(arch, v_prediction, "unet"), shipped_config(arch, v_prediction, "vae"),
                           shipped, f"{checkpoint.name} is not of the standard {family(arch).names.label} shape; "
                           f"put the ldm config it was made with beside it as {checkpoint.with_suffix('.yaml').name}, "
                           "as the WebUI expects.")
    folders = ldm.text_encoder_folders()
    return PartConfigs(ldm.unet_config(tensors), ldm.vae_config(tensors),
                       [local or default for local, default in zip(folders + [None] * len(shipped), shipped)],
                       f"The model config {ldm.path} does not describe this checkpoint; fix it or remove it.")


def load_single_file(path: Path, vae_path: Path | None, prediction_type: str, dtype: torch.dtype) -> BaseModel:
    """A BaseModel from a .safetensors / .ckpt checkpoint (and an optional separate VAE)."""
    return load_checkpoint(open_checkpoint(path), vae_path, prediction_type, dtype)


def load_checkpoint(checkpoint: CheckpointFile, vae_path: Path | None, prediction_type: str,
                    dtype: torch.dtype) -> BaseModel:
    """A BaseModel from an opened checkpoint (whose tensors may be meta tensors, to check configs)."""
    path = checkpoint.path
    arch = detect_checkpoint_arch(checkpoint.meta, path)
    objective = family(arch).objective
    ldm = find_ldm_config(path)
    v_prediction = declared_v_prediction(prediction_type, ldm, checkpoint.metadata, checkpoint.meta)
    configs_v_prediction = bool(v_prediction)
    configs = part_configs(arch, configs_v_prediction, path, ldm, checkpoint.meta)
    unet = _load_unet(checkpoint, configs, dtype)
    if v_prediction is None:  # nothing says: the family's own, or the WebUI's test where it has one (SD2)
        v_prediction = (objective.prediction == "v_prediction"
                        or objective.probe_v_prediction and looks_like_v_prediction(unet))
        if v_prediction:
            unet.register_to_config(sample_size=shipped_config(arch, True, "unet")["sample_size"])
    vae, text_encoders = checkpoint_encoders(checkpoint, arch, configs, vae_path, dtype)
    specs = family(arch).parts.text_encoders
    tokenizers = [load_clip_tokenizer(folder, pad_token=spec.pad_token)
                  for spec, folder in zip(specs, configs.text_encoder_folders)]
    for spec, tokenizer, encoder, folder in zip(specs, tokenizers, text_encoders, configs.text_encoder_folders):
        fit_tokenizer(tokenizer, encoder, folder, f"the text encoder under {spec.ldm_prefix} in {path}")
    scheduler = training_scheduler(shipped_config(arch, v_prediction, "scheduler"), v_prediction)
    encoders = functools.partial(load_single_file_encoders, path, arch, configs_v_prediction, vae_path, dtype)
    return BaseModel(arch, v_prediction, unet, vae, text_encoders, tokenizers, scheduler, path.stem, path, encoders)


def checkpoint_encoders(checkpoint: CheckpointFile, arch: str, configs: PartConfigs, vae_path: Path | None,
                        dtype: torch.dtype, with_vae: bool = True, with_text_encoders: bool = True,
                        ) -> tuple[AutoencoderKL | None, list[torch.nn.Module]]:
    """The VAE (the checkpoint's own, or the one at `vae_path`) and the text encoder(s) of a checkpoint;
    None / [] for a part not asked for."""
    vae = None
    if with_vae:
        vae = load_vae_file(vae_path, configs.vae, dtype) if vae_path else _load_vae(checkpoint, configs, dtype)
    text_encoders = [_load_text_encoder(checkpoint, spec, folder, configs.advice, dtype)
                     for spec, folder in zip(family(arch).parts.text_encoders, configs.text_encoder_folders)
                     if with_text_encoders]
    return vae, text_encoders


def load_single_file_encoders(path: Path, arch: str, v_prediction: bool, vae_path: Path | None, dtype: torch.dtype,
                              with_vae: bool = True, with_text_encoders: bool = True,
                              ) -> tuple[AutoencoderKL | None, list[torch.nn.Module]]:
    """`checkpoint_encoders` of the file at `path`, already loaded once as `arch` (so checked), read again."""
    checkpoint = open_checkpoint(path)
    configs = part_configs(arch, v_prediction, path, find_ldm_config(path), checkpoint.meta)
    return checkpoint_encoders(checkpoint, arch, configs, vae_path, dtype, with_vae, with_text_encoders)


def _load_unet(checkpoint: CheckpointFile, configs: PartConfigs, dtype: torch.dtype) -> UNet2DConditionModel:
    what = f"The UNet in {checkpoint.path}"
    model = empty_model(lambda: UNet2DConditionModel.from_config(configs.unet))
    state_dict = unet_state_dict(checkpoint.read(UNET_PREFIX, dtype), configs.unet, model, what, configs.advice)
    return load_weights(model, state_dict, what, configs.advice)


def check_unet_config(checkpoint: CheckpointFile, configs: PartConfigs) -> None:
    """UserError (with the configs' advice) unless the checkpoint's UNet tensors are, by name and shape, those of
    `configs.unet`; read from the header only (a file of non-standard shape without its yaml is found here)."""
    what = f"The UNet in {checkpoint.path}"
    model = empty_model(lambda: UNet2DConditionModel.from_config(configs.unet))
    tensors = {key: value for key, value in checkpoint.meta.items() if key.startswith(UNET_PREFIX)}
    check_weights(model, unet_state_dict(tensors, configs.unet, model, what, configs.advice), what, configs.advice)


def _load_vae(checkpoint: CheckpointFile, configs: PartConfigs, dtype: torch.dtype) -> AutoencoderKL:
    if not any(key.startswith(VAE_PREFIX) for key in checkpoint.meta):
        raise UserError(f"{checkpoint.path} has no VAE (no {VAE_PREFIX}* tensors). Give a separate VAE file as vae.")
    what = f"The VAE in {checkpoint.path}"
    model = empty_model(lambda: AutoencoderKL.from_config(configs.vae))
    state_dict = vae_state_dict(checkpoint.read(VAE_PREFIX, dtype), VAE_PREFIX, configs.vae, model, what,
                                configs.advice)
    return load_weights(model, state_dict, what, configs.advice)


def _load_text_encoder(checkpoint: CheckpointFile, spec: TextEncoderSpec, folder: Path, advice: str,
                       dtype: torch.dtype) -> torch.nn.Module:
    what = f"The text encoder under {spec.ldm_prefix} in {checkpoint.path}"
    model_class = spec.model_class.load()
    config = model_class.config_class.from_pretrained(str(folder), local_files_only=True)
    model = empty_model(lambda: model_class(config))
    state_dict = text_encoder_state_dict(checkpoint.read(spec.ldm_prefix, dtype), spec, model, what, advice)
    return load_weights(model, state_dict, what, advice)
