"""What the Stable Diffusion families (SD1, SD2, SDXL) share: their single-file layout, objective, kohya's LoRA
targets, the SD1 / SD2 block layout and pipeline options, and their text encoders' classes."""

from __future__ import annotations

from .interface import BlockLayout, LoraTargets, Objective, Ref

UNET_PREFIX = "model.diffusion_model."  # where the UNet sits in a single-file checkpoint
VAE_PREFIX = "first_stage_model."

UNET_ENGINE = Ref("lora_train.train.image_trainer:build_loop")
EPSILON = Objective("epsilon", Ref("lora_train.train.noise:sample_timesteps"))
ONE_CLIP = Ref("lora_train.train.conditioning:ONE_CLIP")
CLIP_TEXT_MODEL = Ref("transformers:CLIPTextModel")
CLIP_WITH_PROJECTION = Ref("transformers:CLIPTextModelWithProjection")
SD_PIPELINE = "StableDiffusionPipeline"
SD_PIPELINE_OPTIONS = (("safety_checker", None), ("feature_extractor", None), ("requires_safety_checker", False))

# kohya's sd-scripts (`networks/lora.py`): every Linear / Conv2d inside the UNet's Transformer2DModel blocks and
# the CLIP attention / MLP; LoCon adds the ResNet and resampling blocks.
KOHYA_TARGETS = LoraTargets(
    unet_blocks=("Transformer2DModel",),
    locon_blocks=("ResnetBlock2D", "Downsample2D", "Upsample2D"),
    text_encoder_blocks=(("CLIPAttention", "attention"), ("CLIPSdpaAttention", "attention"),
                         ("CLIPFlashAttention2", "attention"), ("CLIPMLP", "mlp")))

# 17 blocks: BASE (the text encoder), the UNet blocks that hold attention.
SD_BLOCKS = BlockLayout(
    blocks=("BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
            "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11"),
    groups=(("base", ("BASE",)), ("in_shallow", ("IN01", "IN02", "IN04")), ("in_deep", ("IN05", "IN07", "IN08")),
            ("mid", ("M00",)), ("out_deep", ("OUT03", "OUT04", "OUT05", "OUT06")),
            ("out_shallow", ("OUT07", "OUT08", "OUT09", "OUT10", "OUT11"))))
