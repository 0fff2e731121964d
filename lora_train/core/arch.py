"""Which base model family a kohya-format LoRA was trained on: sd1, sd2 or sdxl (or unknown).

In order: key names only SDXL files have (`lora_te1_` / `lora_te2_`, sgm UNet blocks), then the
metadata (`ss_base_model_version`, `ss_v2`, `modelspec.architecture`), then the width of the
UNet's cross-attention input or the text encoder (768 SD1, 1024 SD2, 2048 SDXL UNet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ARCH_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
_SGM_BLOCKS = ("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")
_UNET_CONTEXT_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_TEXT_ENCODER_WIDTH = {768: "sd1", 1024: "sd2"}
_MODELSPEC = (("stable-diffusion-xl", "sdxl"), ("stable-diffusion-v2", "sd2"), ("stable-diffusion-v1", "sd1"))


def arch_from_metadata(metadata: Mapping[str, str]) -> str | None:
    version = metadata.get("ss_base_model_version", "")
    if version.startswith("sdxl"):
        return "sdxl"
    if version.startswith("sd_v2") or metadata.get("ss_v2") == "True":
        return "sd2"
    if version.startswith("sd_v1"):
        return "sd1"
    spec = metadata.get("modelspec.architecture", "")
    return next((arch for prefix, arch in _MODELSPEC if spec.startswith(prefix)), None)


def _width_arch(shapes: Mapping[str, Sequence[int]]) -> str | None:
    for key, shape in shapes.items():
        if key.startswith("lora_unet_") and key.endswith("attn2_to_k.lora_down.weight"):
            return _UNET_CONTEXT_WIDTH.get(shape[1])
    for key, shape in shapes.items():
        if key.startswith("lora_te_") and key.endswith("self_attn_q_proj.lora_down.weight"):
            return _TEXT_ENCODER_WIDTH.get(shape[1])
    return None


def detect_arch(shapes: Mapping[str, Sequence[int]], metadata: Mapping[str, str] | None = None) -> str | None:
    """The family of a LoRA file from its tensor shapes (key -> shape) and header metadata."""
    if any(key.startswith(("lora_te1_", "lora_te2_") + _SGM_BLOCKS) for key in shapes):
        return "sdxl"
    return arch_from_metadata(metadata or {}) or _width_arch(shapes)
