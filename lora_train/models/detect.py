"""Which model a single-file checkpoint holds, from its tensor names and shapes alone.

SD1 / SD2 / SDXL are told apart by their text encoders (OpenAI CLIP under
`cond_stage_model.transformer.`, OpenCLIP under `cond_stage_model.model.`, both under
`conditioner.embedders.`). Everything else gets a UserError that says what the file looks like
(a LoRA, an embedding, a VAE, a diffusers UNet, SD3, FLUX, ...) and what to use instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES

from ..core.errors import UserError
from .arch_parts import ARCHS, UNET_PREFIX, VAE_PREFIX

SUPPORTED = "lora_train trains on Stable Diffusion 1.x, 2.x and SDXL checkpoints only; pick one of those as base model."

# Other model families, by names of tensors only they have (diffusers' own markers where it has them).
_OTHER_FAMILIES: dict[str, tuple[str, ...]] = {
    "Stable Diffusion 3 / 3.5": (*CHECKPOINT_KEY_NAMES["sd3"], *CHECKPOINT_KEY_NAMES["sd35_large"]),
    "FLUX.2": tuple(CHECKPOINT_KEY_NAMES["flux2"]),
    "Chroma": tuple(CHECKPOINT_KEY_NAMES["chroma"]),
    "FLUX.1": tuple(CHECKPOINT_KEY_NAMES["flux"]),
    "Stable Cascade": (CHECKPOINT_KEY_NAMES["stable_cascade_stage_b"], CHECKPOINT_KEY_NAMES["stable_cascade_stage_c"]),
    "AuraFlow": tuple(CHECKPOINT_KEY_NAMES["auraflow"][:1]),
    "HunyuanVideo": (CHECKPOINT_KEY_NAMES["hunyuan-video"],),
    "LTX-Video": tuple(CHECKPOINT_KEY_NAMES["ltx-video"][:4]),
    "Mochi": tuple(CHECKPOINT_KEY_NAMES["mochi-1-preview"]),
    "Lumina 2": tuple(CHECKPOINT_KEY_NAMES["lumina2"]),
    "PixArt / Sana": tuple(CHECKPOINT_KEY_NAMES["sana"][:1]),
    "Wan": tuple(CHECKPOINT_KEY_NAMES["wan"]),
    "HiDream": (CHECKPOINT_KEY_NAMES["hidream"],),
    "Z-Image": tuple(CHECKPOINT_KEY_NAMES["z-image-turbo"]),
    "Playground v2.5": (CHECKPOINT_KEY_NAMES["playground-v2-5"],),
    "Hunyuan-DiT": ("mlp_t5.0.weight", "model.mlp_t5.0.weight"),
}
_UNET_IN = UNET_PREFIX + "input_blocks.0.0.weight"
_IN_CHANNEL_VARIANTS = {9: "an inpainting model", 8: "an InstructPix2Pix model", 5: "a depth-to-image model",
                        7: "an x4 upscaler"}


def detect_checkpoint_arch(tensors: Mapping[str, torch.Tensor], path: Path) -> str:
    """`sd1`, `sd2` or `sdxl` for a full SD checkpoint; a UserError saying what the file is otherwise."""
    keys = tensors.keys()
    _refuse_adapters(keys, path)
    for family, markers in _OTHER_FAMILIES.items():
        if any(marker in tensors for marker in markers):
            raise UserError(f"{path} looks like a {family} model. {SUPPORTED}")
    if _UNET_IN not in tensors:
        _refuse_partial(keys, path)
        raise UserError(f"{path} does not look like a Stable Diffusion checkpoint (no UNet under "
                        f"'{UNET_PREFIX}'). {SUPPORTED}")
    if any(".time_stack." in key or ".time_mixer." in key for key in keys):
        raise UserError(f"{path} looks like a Stable Video Diffusion model. {SUPPORTED}")
    channels = tensors[_UNET_IN].shape[1]
    if channels != 4:
        variant = _IN_CHANNEL_VARIANTS.get(channels, f"a model with {channels} UNet input channels")
        raise UserError(f"{path} is {variant}, not a text-to-image base model. Train on the base checkpoint it was "
                        "made from instead.")
    arch = _arch_from_text_encoders(keys)
    if arch is None:
        if any(key.startswith("conditioner.embedders.0.model.") for key in keys):
            raise UserError(f"{path} looks like the SDXL refiner, which is not trained with LoRAs here; "
                            "use an SDXL base checkpoint.")
        raise UserError(f"{path} has a UNet but no text encoder, so it cannot be trained as is. Use the full "
                        "checkpoint (UNet + VAE + text encoder).")
    return arch


def _arch_from_text_encoders(keys) -> str | None:
    prefixes = {spec.ldm_prefix for spec in ARCHS["sdxl"].text_encoders}
    if all(any(key.startswith(prefix) for key in keys) for prefix in prefixes):
        return "sdxl"
    for arch in ("sd2", "sd1"):
        if any(key.startswith(ARCHS[arch].text_encoders[0].ldm_prefix) for key in keys):
            return arch
    return None


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
