"""Stable Diffusion 2.x (2.0 / 2.1, 512 base and 768 v): one OpenCLIP-H text encoder used at its penultimate
layer, epsilon or v-prediction (the WebUI's test tells when the files do not), 768 px."""

from __future__ import annotations

from dataclasses import replace

from .interface import Family, FolderSignature, KeySignature, LoraSignature, Names, TextEncoderSpec, UnetParts
from .stable_diffusion import (CLIP_TEXT_MODEL, EPSILON, KOHYA_TARGETS, ONE_CLIP, SD_BLOCKS, SD_PIPELINE,
                               SD_PIPELINE_OPTIONS, UNET_ENGINE)

TEXT_ENCODERS = (TextEncoderSpec("cond_stage_model.model.", True, CLIP_TEXT_MODEL, "text_encoder", "!",
                                 unused_last_layer=True),)

FAMILIES = (Family(
    id="sd2",
    names=Names(label="SD2", title="SD 2.x", base_model_version="sd_v2", modelspec="stable-diffusion-v2-512",
                base_model_version_v="sd_v2_v", modelspec_v="stable-diffusion-v2-768-v", v2=True),
    default_resolution=768,
    checkpoint=KeySignature(prefixes=tuple(spec.ldm_prefix for spec in TEXT_ENCODERS)),
    folder=FolderSignature(SD_PIPELINE),  # a StableDiffusionPipeline whose text encoder is not SD1's
    lora=LoraSignature(header=(("ss_v2", "True"), ("ss_base_model_version", "sd_v2"),
                               ("modelspec.architecture", "stable-diffusion-v2")),
                       unet_context_width=1024, text_encoder_width=1024),
    objective=replace(EPSILON, probe_v_prediction=True),
    conditioning=ONE_CLIP,
    targets=KOHYA_TARGETS,
    blocks=SD_BLOCKS,
    parts=UnetParts(TEXT_ENCODERS, SD_PIPELINE_OPTIONS, configs="sd2", configs_v="sd2-v",
                    unet_lora_names="diffusers", schedule_buffers=True),
    engine=UNET_ENGINE,
),)
