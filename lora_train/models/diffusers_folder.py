"""Load SD1 / SD2 / SDXL from a diffusers folder (model_index.json + one folder per part), offline."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..core.errors import UserError
from ..families import family
from ..families.recognise import folder_family
from .base_model import BaseModel
from .clip_tokenizer import fit_tokenizer, load_clip_tokenizer
from .detect import supported
from .pretrained import load_pretrained, require_part
from .prediction import training_scheduler
from .shipped import shipped_config
from .vae_file import load_vae_file

def _what_folder(folder: Path) -> str:
    """What a folder without model_index.json holds, in words."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "not a diffusers folder (it has no model_index.json)"
    if isinstance(config, dict) and config.get("model_type") and "_class_name" not in config:
        return (f"a transformers {config['model_type']} model folder, not a Stable Diffusion one: task_type: "
                "text-generation trains a text LoRA on a language model")
    name = config.get("_class_name") if isinstance(config, dict) else None
    return f"a single diffusers model folder ({name or 'one part'}), not a whole pipeline"


def folder_arch(folder: Path) -> str:
    """The family id (sd1 | sd2 | sdxl) from model_index.json and, where families share a pipeline class, the
    part configs they declare (SD1's text encoder uses quick_gelu); a UserError for anything else."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise UserError(f"{folder} is {_what_folder(folder)}. Give a whole diffusers pipeline folder (with "
                        "model_index.json) or a single-file checkpoint as base model.")
    pipeline = json.loads(index_path.read_text(encoding="utf-8")).get("_class_name", "")

    def part_config(file: str) -> dict:
        part, _, name = file.rpartition("/")
        path = require_part(folder, part, f"The diffusers folder {folder}") / name
        return json.loads(path.read_text(encoding="utf-8"))

    found = folder_family(pipeline, part_config)
    if found is None:
        raise UserError(f"{folder} holds a {pipeline or 'unknown'} model. {supported()}")
    return found.id


def load_diffusers_folder(folder: Path, vae_path: Path | None, prediction_type: str, dtype: torch.dtype) -> BaseModel:
    """A BaseModel from a diffusers pipeline folder (and an optional separate VAE)."""
    arch = folder_arch(folder)
    what = f"The diffusers folder {folder}"
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    if not scheduler_path.is_file():
        raise UserError(f"{what} is missing {scheduler_path}. Copy the whole diffusers folder again.")
    scheduler_config = json.loads(scheduler_path.read_text(encoding="utf-8"))
    v_prediction = (prediction_type if prediction_type != "auto" else
                    scheduler_config.get("prediction_type", family(arch).objective.prediction)) == "v_prediction"
    unet = load_pretrained(UNet2DConditionModel, folder, "unet", dtype, what)
    vae, text_encoders = load_folder_encoders(folder, arch, v_prediction, vae_path, dtype)
    specs = family(arch).parts.text_encoders
    tokenizers = [load_clip_tokenizer(folder / spec.tokenizer_subfolder, pad_token=spec.pad_token) for spec in specs]
    for spec, tokenizer, encoder in zip(specs, tokenizers, text_encoders):
        fit_tokenizer(tokenizer, encoder, folder / spec.tokenizer_subfolder, f"the text encoder in {folder / spec.subfolder}")
    return BaseModel(arch, v_prediction, unet, vae, text_encoders, tokenizers,
                     training_scheduler(scheduler_config, v_prediction), folder.name, folder,
                     functools.partial(load_folder_encoders, folder, arch, v_prediction, vae_path, dtype))


def load_folder_encoders(folder: Path, arch: str, v_prediction: bool, vae_path: Path | None, dtype: torch.dtype,
                         with_vae: bool = True, with_text_encoders: bool = True,
                         ) -> tuple[AutoencoderKL | None, list[torch.nn.Module]]:
    """The VAE (the folder's own, or the one at `vae_path`) and the text encoder(s) of a diffusers folder;
    None / [] for a part not asked for."""
    what = f"The diffusers folder {folder}"
    vae = None
    if with_vae:
        vae = (load_vae_file(vae_path, _vae_config(folder, arch, v_prediction), dtype) if vae_path
               else load_pretrained(AutoencoderKL, folder, "vae", dtype, what))
    text_encoders = [load_pretrained(spec.model_class.load(), folder, spec.subfolder, dtype, what)
                     for spec in family(arch).parts.text_encoders if with_text_encoders]
    return vae, text_encoders


def _vae_config(folder: Path, arch: str, v_prediction: bool) -> dict:
    """The folder's own VAE config, or the shipped one when the folder has no VAE (a separate one is given)."""
    path = folder / "vae" / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else shipped_config(arch, v_prediction, "vae")
