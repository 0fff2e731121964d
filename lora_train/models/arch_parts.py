"""What differs between the parts of SD1, SD2 and SDXL: where each part lives in a single-file
checkpoint, and which text-encoder classes and tokenizers they use.

One table, read by the loader (ldm key prefixes -> diffusers parts) and the fixture writer (the
same prefixes in reverse). The names the families go by (labels, metadata) are in core/arch.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import CLIPTextModel, CLIPTextModelWithProjection

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder of an architecture."""

    ldm_prefix: str  # where its weights sit in a single-file checkpoint
    open_clip: bool  # OpenCLIP layout (resblocks, fused in_proj) rather than Hugging Face CLIP
    model_class: type
    subfolder: str  # diffusers folder name; the tokenizer's is the same with "tokenizer"
    pad_token: str
    # SD2 uses OpenCLIP's penultimate layer: checkpoints hold one block more than the diffusers model.
    unused_last_layer: bool = False

    @property
    def tokenizer_subfolder(self) -> str:
        return self.subfolder.replace("text_encoder", "tokenizer")


@dataclass(frozen=True)
class ArchSpec:
    """An architecture: its text encoders in pipeline order and the pipeline class diffusers uses."""

    name: str  # sd1 | sd2 | sdxl
    text_encoders: tuple[TextEncoderSpec, ...]
    pipeline_class_name: str


ARCHS: dict[str, ArchSpec] = {
    "sd1": ArchSpec("sd1", (
        TextEncoderSpec("cond_stage_model.transformer.", False, CLIPTextModel, "text_encoder", "<|endoftext|>"),
    ), "StableDiffusionPipeline"),
    "sd2": ArchSpec("sd2", (
        TextEncoderSpec("cond_stage_model.model.", True, CLIPTextModel, "text_encoder", "!", unused_last_layer=True),
    ), "StableDiffusionPipeline"),
    "sdxl": ArchSpec("sdxl", (
        TextEncoderSpec("conditioner.embedders.0.transformer.", False, CLIPTextModel, "text_encoder",
                        "<|endoftext|>"),
        TextEncoderSpec("conditioner.embedders.1.model.", True, CLIPTextModelWithProjection, "text_encoder_2", "!"),
    ), "StableDiffusionXLPipeline"),
}


def shipped_config_name(arch: str, v_prediction: bool) -> str:
    """The folder under `lora_train/models/configs/` with this architecture's diffusers configs."""
    return "sd2-v" if arch == "sd2" and v_prediction else arch
