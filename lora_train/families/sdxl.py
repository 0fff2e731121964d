"""SDXL base 1.0 and its fine-tunes (Pony, Illustrious, NoobAI ...): CLIP-L and OpenCLIP-bigG (with projection)
side by side, size and crop conditioning, epsilon, 1024 px; its LoRA modules are named by the sgm UNet's blocks."""

from __future__ import annotations

from .interface import (BlockLayout, Family, FolderSignature, KeySignature, LoraSignature, Names, Ref,
                     TextEncoderSpec, UnetParts)
from .stable_diffusion import CLIP_TEXT_MODEL, CLIP_WITH_PROJECTION, EPSILON, KOHYA_TARGETS, UNET_ENGINE

TEXT_ENCODERS = (
    TextEncoderSpec("conditioner.embedders.0.transformer.", False, CLIP_TEXT_MODEL, "text_encoder", "<|endoftext|>"),
    TextEncoderSpec("conditioner.embedders.1.model.", True, CLIP_WITH_PROJECTION, "text_encoder_2", "!"),
)

FAMILIES = (Family(
    id="sdxl",
    names=Names(label="SDXL", title="SDXL", base_model_version="sdxl_base_v1-0", modelspec="stable-diffusion-xl-v1-base",
                implementation="https://github.com/Stability-AI/generative-models"),
    default_resolution=1024,
    # OpenCLIP-bigG second tells it (the refiner has it first), as the WebUI's model list has always read it.
    checkpoint=KeySignature(prefixes=(TEXT_ENCODERS[1].ldm_prefix,)),
    folder=FolderSignature("StableDiffusionXLPipeline"),
    lora=LoraSignature(key_prefixes=("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_middle_block_",
                                     "lora_unet_output_blocks_"),
                       header=(("ss_base_model_version", "sdxl"), ("modelspec.architecture", "stable-diffusion-xl")),
                       unet_context_width=2048),
    objective=EPSILON,
    conditioning=Ref("lora_train.train.conditioning:TWO_CLIPS"),
    targets=KOHYA_TARGETS,
    # 12 blocks: BASE (the text encoders) and the UNet blocks that hold attention; the presets pick them by depth.
    blocks=BlockLayout(
        blocks=("BASE", "IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05"),
        groups=(("base", ("BASE",)), ("in_shallow", ("IN04", "IN05")), ("in_deep", ("IN07", "IN08")), ("mid", ("M00",)),
                ("out_deep", ("OUT00", "OUT01", "OUT02")), ("out_shallow", ("OUT03", "OUT04", "OUT05")))),
    parts=UnetParts(TEXT_ENCODERS, (("add_watermarker", False),), configs="sdxl", unet_lora_names="sgm",
                    vae_fp32=True),
    engine=UNET_ENGINE,
),)
