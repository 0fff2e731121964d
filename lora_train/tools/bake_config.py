"""What a diffusers folder baked into one file needs beside it to be read back as the same model.

A single file holds weights only: the WebUI and `train` build a checkpoint of its family's standard
shape unless a `<name>.yaml` (an ldm / sgm config) beside it says otherwise. So when the folder's
UNet or VAE is not of the standard shape, or the model predicts v, the yaml is written from the
folder's configs (`models.ldm_yaml`); a text encoder of another shape also gets a folder beside it
(`<name>-text-encoder[-2]/`: its config and tokenizer), which the yaml names. A model of the standard
shape gets nothing beside it, as before.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.atomic import write_new_file, write_new_folder
from ..core.errors import UserError
from ..families import family
from ..models.base_model import BaseModel
from ..models.ldm_yaml import first_stage_config, sd_yaml, sdxl_yaml, unet_params
from ..models.shipped import shipped_config

_TEXT_ENCODER_SHAPE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                       "max_position_embeddings", "projection_dim", "hidden_act")


@dataclass(frozen=True)
class ModelShape:
    """What the files beside a baked file are written from: the configs and tokenizers, not the weights."""

    arch: str
    v_prediction: bool
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: list  # transformers configs
    tokenizers: list

    @classmethod
    def of(cls, model: BaseModel) -> "ModelShape":
        return cls(model.arch, model.v_prediction, dict(model.unet.config), dict(model.vae.config),
                   [encoder.config for encoder in model.text_encoders], list(model.tokenizers))


@dataclass
class BesideFiles:
    """The yaml (None: not needed), the text-encoder folders it names, and why they are written."""

    yaml_path: Path
    config: dict[str, Any] | None = None
    folders: dict[int, Path] = field(default_factory=dict)  # text encoder index -> its folder
    reasons: list[str] = field(default_factory=list)


def _encoder_shape(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in _TEXT_ENCODER_SHAPE}


def beside_files(model: ModelShape, out: Path) -> BesideFiles:
    """What `out` (the baked file of `model`) needs beside it."""
    arch, title = model.arch, family(model.arch).names.title
    files = BesideFiles(out.with_suffix(".yaml"))
    if unet_params(model.unet) != unet_params(shipped_config(arch, model.v_prediction, "unet")):
        files.reasons.append(f"the UNet is not of the standard {title} shape")
    if first_stage_config(model.vae) != first_stage_config(shipped_config(arch, False, "vae")):
        files.reasons.append(f"the VAE is not of the standard {title} shape")
    if model.v_prediction:
        files.reasons.append("the model predicts v")
    subfolders = ["text_encoder", "text_encoder_2"][:len(model.text_encoders)]
    for index, (encoder, subfolder) in enumerate(zip(model.text_encoders, subfolders)):
        if _encoder_shape(encoder.to_dict()) != _encoder_shape(shipped_config(arch, False, subfolder)):
            files.folders[index] = out.parent / f"{out.stem}-text-encoder{f'-{index + 1}' if index else ''}"
            files.reasons.append(f"text encoder {index + 1} is not of the standard {title} shape")
    if not files.reasons:
        return files
    folders = [str(files.folders[i].resolve()) if i in files.folders else None for i in range(len(subfolders))]
    files.config = (sdxl_yaml(model.unet, model.vae, folders, model.text_encoders[0].num_hidden_layers,
                              model.v_prediction)
                    if arch == "sdxl" else sd_yaml(model.unet, model.vae, folders[0], arch == "sd2", model.v_prediction))
    return files


def check_free(files: BesideFiles) -> None:
    """UserError when a file or folder to write beside the baked file exists (nothing is ever replaced)."""
    for path in ([files.yaml_path] if files.config else []) + list(files.folders.values()):
        if path.exists():
            raise UserError(f"{path} already exists and is never overwritten; the baked model needs it beside it "
                            f"({', '.join(files.reasons)}). Choose another --out name.")


def write_beside(files: BesideFiles, model: ModelShape) -> list[Path]:
    """Write the yaml and the text-encoder folders; return their paths (removed again if one fails)."""
    written: list[Path] = []
    try:
        for index, folder in files.folders.items():
            def fill(staging: Path, index: int = index) -> None:
                model.text_encoders[index].save_pretrained(str(staging))
                model.tokenizers[index].save_pretrained(str(staging))
            written.append(write_new_folder(folder, fill))
        if files.config:
            text = yaml.safe_dump(files.config, sort_keys=False)
            written.append(write_new_file(files.yaml_path, lambda temporary: temporary.write_text(text,
                                                                                                  encoding="utf-8")))
    except BaseException:
        remove(written)
        raise
    return written


def remove(paths: list[Path]) -> None:
    """Remove what `write_beside` wrote (when the baked file itself could not be saved)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
