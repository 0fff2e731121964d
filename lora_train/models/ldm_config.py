"""The WebUI's convention for checkpoints of non-standard shape: a `<checkpoint name>.yaml` (an
ldm / sgm config) beside the file defines the UNet and the VAE, says whether the model predicts
v (`parameterization: v`, or sgm's `VScaling`), and its CLIP encoders' `version`, when it names
a local folder, holds the text-encoder config and tokenizer.

The UNet / VAE configs come from diffusers' own `create_*_diffusers_config_from_ldm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml
from diffusers.loaders.single_file_utils import (
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)

from ..core.errors import UserError


@dataclass(frozen=True)
class LdmConfig:
    """A parsed `<checkpoint>.yaml`."""

    path: Path
    config: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        return self.config["model"]["params"]

    def v_prediction(self) -> bool:
        scaling = (self.params.get("denoiser_config") or {}).get("params", {}).get("scaling_config", {})
        return self.params.get("parameterization") == "v" or str(scaling.get("target", "")).endswith("VScaling")

    def unet_config(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        config = self._convert(create_unet_diffusers_config_from_ldm, tensors)
        if "conditioner_config" in self.params and config.get("projection_class_embeddings_input_dim"):
            # SDXL's size/crop conditioning; diffusers only recognises it at the real model's width.
            config.update(class_embed_type=None, addition_embed_type="text_time",
                          addition_time_embed_dim=self._size_embedding_dim())
        if "image_size" in self.params:  # LatentDiffusion's latent size (64 for SD1, 96 for SD2-768)
            config["sample_size"] = self.params["image_size"]
        return config

    def vae_config(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        return self._convert(create_vae_diffusers_config_from_ldm, tensors)

    def _convert(self, create: Callable, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        try:
            return create(self.config, tensors)
        except (KeyError, TypeError) as error:
            raise UserError(f"{self.path}: the model config lacks or mistypes {error} (compare with the WebUI's "
                            "v1-inference.yaml / sd_xl_base.yaml). Fix it or remove it.") from error

    def text_encoder_folders(self) -> list[Path | None]:
        """Per text encoder (pipeline order), the local folder its `version` names, if it is one."""
        if "cond_stage_config" in self.params:
            encoders = [self.params["cond_stage_config"]]
        else:
            emb_models = self.params.get("conditioner_config", {}).get("params", {}).get("emb_models", [])
            encoders = [model for model in emb_models if model.get("input_key") == "txt"]
        return [self._local_folder((encoder.get("params") or {}).get("version")) for encoder in encoders]

    def _size_embedding_dim(self) -> int:
        emb_models = self.params["conditioner_config"]["params"]["emb_models"]
        dims = [model["params"]["outdim"] for model in emb_models if model.get("input_key") != "txt"]
        if not dims:
            raise UserError(f"{self.path}: conditioner_config has no size embedder (ConcatTimestepEmbedderND with "
                            "outdim), which SDXL needs. Fix the yaml or remove it to use the standard SDXL config.")
        return dims[0]

    def _local_folder(self, version: Any) -> Path | None:
        if not isinstance(version, str):
            return None
        for folder in (self.path.parent / version, Path(version)):
            if (folder / "config.json").is_file():
                return folder
        return None


def find_ldm_config(checkpoint: Path) -> LdmConfig | None:
    """The `<checkpoint name>.yaml` beside a checkpoint, parsed, or None when there is none."""
    path = checkpoint.with_suffix(".yaml")
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path} (the config beside the checkpoint) is not valid YAML: {error}. Fix it or remove it."
                        ) from error
    params = config.get("model", {}).get("params") if isinstance(config, dict) else None
    if not isinstance(params, dict) or not ({"unet_config", "network_config"} & params.keys()) \
            or "first_stage_config" not in params:
        raise UserError(f"{path} (the config beside the checkpoint) is not an ldm model config: it needs "
                        "model.params with unet_config (or network_config) and first_stage_config. Fix it or remove it.")
    return LdmConfig(path, config)
