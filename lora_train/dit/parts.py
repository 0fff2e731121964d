"""Load Flux's autoencoder, CLIP-L and T5 from single files (separate, or inside an all-in-one checkpoint),
each built from the config its shapes give (`part_configs`) and filled strictly (`models.weights`).

Tensors are read one part at a time, cast to the wanted dtype as they are read (an fp8 T5 comes out in the
training precision). Extras real files carry and nothing uses (CLIP's `text_projection`, `logit_scale`,
`position_ids`; T5's decoder-side `encoder.embed_tokens` copy) are dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5TokenizerFast

from ..core.errors import UserError
from ..models.checkpoint_file import CheckpointFile, open_checkpoint
from ..models.ldm_parts import vae_state_dict
from ..models.weights import empty_model, load_weights
from .part_configs import ae_config, clip_config, t5_config
from .part_files import PART_TITLES, PartFile

_CLIP_EXTRAS = ("text_projection.weight", "logit_scale", "text_model.embeddings.position_ids")


def _what(part: str, file: PartFile) -> str:
    where = f" (under {file.prefix})" if file.prefix else ""
    return f"The {PART_TITLES[part]} in {file.path}{where}"


def _shapes(checkpoint: CheckpointFile) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in checkpoint.meta.items()}


def load_ae(file: PartFile, dtype: torch.dtype) -> AutoencoderKL:
    """The autoencoder: BFL's `ae.safetensors` (ldm names), or the `vae.` part of an all-in-one file."""
    checkpoint, what = open_checkpoint(file.path), _what("ae", file)
    config = ae_config(_shapes(checkpoint), file.prefix, what)
    model = empty_model(lambda: AutoencoderKL.from_config(config))
    advice = "Use Flux's ae.safetensors (the FLUX.1 autoencoder)."
    tensors = checkpoint.read(file.prefix, dtype)
    return load_weights(model, vae_state_dict(tensors, file.prefix, config, model, what, advice), what, advice)


def load_clip(file: PartFile, dtype: torch.dtype) -> CLIPTextModel:
    """CLIP-L: `clip_l.safetensors` (`text_model.*`), or its part of an all-in-one file."""
    checkpoint, what = open_checkpoint(file.path), _what("clip_l", file)
    config = CLIPTextConfig(**clip_config(_shapes(checkpoint), file.prefix, what))
    model = empty_model(lambda: CLIPTextModel(config))
    flat = not hasattr(model, "text_model")  # transformers >= 5.6 dropped the level
    state = {}
    for key, value in checkpoint.read(file.prefix, dtype).items():
        name = key[len(file.prefix):]
        if name not in _CLIP_EXTRAS:
            state[name.removeprefix("text_model.") if flat else name] = value
    return load_weights(model, state, what, "Use the CLIP-L (clip_l.safetensors) that Flux uses.")


def load_t5(file: PartFile, dtype: torch.dtype) -> T5EncoderModel:
    """T5's encoder: `t5xxl_fp16.safetensors` / `t5xxl_fp8_e4m3fn.safetensors`, or its part of an all-in-one file."""
    checkpoint, what = open_checkpoint(file.path), _what("t5xxl", file)
    if any(key.endswith(".scale_weight") for key in checkpoint.meta):
        raise UserError(f"{what} is a 'scaled' fp8 file (with .scale_weight tensors), which is not read yet. Use "
                        "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors.")
    config = T5Config(**t5_config(_shapes(checkpoint), file.prefix, what))
    model = empty_model(lambda: T5EncoderModel(config))
    state = {key[len(file.prefix):]: value for key, value in checkpoint.read(file.prefix, dtype).items()}
    if "shared.weight" in state:  # the encoder's embedding is the shared one (one tensor under two names)
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
    return load_weights(model, state, what, "Use the T5-XXL encoder Flux uses (t5xxl_fp16.safetensors).")


def load_t5_tokenizer(folder: Path) -> T5TokenizerFast:
    try:
        return T5TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise UserError(f"The T5 tokenizer in {folder} could not be read ({error}).") from error
