"""Stable Diffusion 1.x (SD 1.5 and its fine-tunes): one OpenAI CLIP-L text encoder, epsilon, 512 px."""

from __future__ import annotations

from .interface import Family, FolderSignature, KeySignature, LoraSignature, Names, TextEncoderSpec, UnetParts
from .stable_diffusion import (CLIP_TEXT_MODEL, EPSILON, KOHYA_TARGETS, ONE_CLIP, SD_BLOCKS, SD_PIPELINE,
                               SD_PIPELINE_OPTIONS, UNET_ENGINE)

TEXT_ENCODERS = (TextEncoderSpec("cond_stage_model.transformer.", False, CLIP_TEXT_MODEL, "text_encoder",
                                 "<|endoftext|>"),)

FAMILIES = (Family(
    id="sd1",
    names=Names(label="SD1", title="SD 1.x", base_model_version="sd_v1", modelspec="stable-diffusion-v1"),
    default_resolution=512,
    checkpoint=KeySignature(prefixes=tuple(spec.ldm_prefix for spec in TEXT_ENCODERS)),
    # SD1 and SD2 folders differ in their text encoder: OpenAI CLIP uses quick_gelu, OpenCLIP gelu.
    folder=FolderSignature(SD_PIPELINE, (("text_encoder/config.json", "hidden_act", "quick_gelu"),)),
    lora=LoraSignature(header=(("ss_base_model_version", "sd_v1"), ("modelspec.architecture", "stable-diffusion-v1")),
                       unet_context_width=768, text_encoder_width=768),
    objective=EPSILON,
    conditioning=ONE_CLIP,
    targets=KOHYA_TARGETS,
    blocks=SD_BLOCKS,
    parts=UnetParts(TEXT_ENCODERS, SD_PIPELINE_OPTIONS, configs="sd1", unet_lora_names="diffusers",
                    schedule_buffers=True),
    engine=UNET_ENGINE,
),)
