"""Which model a single-file checkpoint holds, from its tensor names and shapes alone.

The family comes from `families.recognise.checkpoint_family` (SD1 / SD2 / SDXL by where their text
encoders sit; other families by tensor names only they have, each refused by name). Everything else
gets a UserError that says what the file looks like (a LoRA, an embedding, a VAE, a diffusers UNet, an
inpainting model, ...) and what to use instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..core.errors import UserError
from ..families import titles
from ..families.interface import NotTrained
from ..families.recognise import checkpoint_family
from ..families.stable_diffusion import UNET_PREFIX, VAE_PREFIX


def supported() -> str:
    """What a refusal adds: the families lora_train trains."""
    return f"lora_train trains on {titles()} checkpoints only; pick one of those as base model."


_UNET_IN = UNET_PREFIX + "input_blocks.0.0.weight"
_IN_CHANNEL_VARIANTS = {9: "an inpainting model", 8: "an InstructPix2Pix model", 5: "a depth-to-image model",
                        7: "an x4 upscaler"}


def detect_checkpoint_arch(tensors: Mapping[str, torch.Tensor], path: Path) -> str:
    """The family id (sd1 | sd2 | sdxl) of a full SD checkpoint; a UserError saying what the file is otherwise."""
    keys = tensors.keys()
    _refuse_adapters(keys, path)
    found = checkpoint_family(keys)
    if isinstance(found, NotTrained):
        raise UserError(f"{path} looks like a {found.title} model. {supported()}")
    if _UNET_IN not in tensors:
        _refuse_partial(keys, path)
        raise UserError(f"{path} does not look like a Stable Diffusion checkpoint (no UNet under "
                        f"'{UNET_PREFIX}'). {supported()}")
    if any(".time_stack." in key or ".time_mixer." in key for key in keys):
        raise UserError(f"{path} looks like a Stable Video Diffusion model. {supported()}")
    channels = tensors[_UNET_IN].shape[1]
    if channels != 4:
        variant = _IN_CHANNEL_VARIANTS.get(channels, f"a model with {channels} UNet input channels")
        raise UserError(f"{path} is {variant}, not a text-to-image base model. Train on the base checkpoint it was "
                        "made from instead.")
    if found is None:
        if any(key.startswith("conditioner.embedders.0.model.") for key in keys):
            raise UserError(f"{path} looks like the SDXL refiner, which is not trained with LoRAs here; "
                            "use an SDXL base checkpoint.")
        raise UserError(f"{path} has a UNet but no text encoder, so it cannot be trained as is. Use the full "
                        "checkpoint (UNet + VAE + text encoder).")
    return found.id


def _refuse_adapters(keys, path: Path) -> None:
    lora_marks = ("lora_down", "lora_up", "lora_A.", "lora_B.", "hada_w1", "lokr_w1", ".oft_", "lora.down")
    if any(key.startswith(("lora_unet_", "lora_te")) or any(mark in key for mark in lora_marks) for key in keys):
        raise UserError(f"{path} is a LoRA, not a base model. Put it in the WebUI's models/Lora folder (or use it as "
                        "pretrained_lora to continue training it) and choose a full checkpoint as base model.")
    if set(keys) & {"emb_params", "string_to_param", "clip_l", "clip_g"} and len(keys) <= 3:
        raise UserError(f"{path} is a textual-inversion embedding, not a base model. Put it in the WebUI's "
                        "embeddings folder and choose a full checkpoint as base model.")


def _refuse_partial(keys, path: Path) -> None:
    if any(key.startswith((VAE_PREFIX + "encoder.", "encoder.conv_in.", "encoder.down")) for key in keys):
        raise UserError(f"{path} is a VAE only, not a full checkpoint. Give it as the separate VAE (vae) and choose "
                        "a full checkpoint as base model.")
    if "conv_in.weight" in keys and any(key.startswith("down_blocks.") for key in keys):
        raise UserError(f"{path} is a single diffusers UNet, not a full checkpoint. Use the whole diffusers folder "
                        "(the one with model_index.json) or a single-file checkpoint as base model.")
