"""The image model families, one table: their identifiers, every label they go by, and the
one sniffer that tells which family a kohya-format LoRA file is for.

`sd1`, `sd2`, `sdxl` (the UNet engine) and `flux-dev`, `flux-schnell`, `chroma` (the DiT engine, see
`dit/`) are the identifiers used everywhere in code. The same family is
`SD1` / `SD2` / `SDXL` on the WebUI card ("sd version") and in the tab, `SD 1.x` in messages,
`sd_v1` ... in a LoRA's `ss_base_model_version` and `stable-diffusion-v1` ... in its
`modelspec.architecture`. The Flux family is `Flux` on the card (Forge's "sd version"; Forge files
Chroma under it too), `flux1` / `chroma` in `ss_base_model_version` and `flux-1-dev`, `flux-1-schnell`,
`chroma` in `modelspec.architecture`, as kohya's sd-scripts write them.

The LoRA sniffer looks, in order, at Flux's block names (the family then from the metadata), key names only SDXL files have (`lora_te1_` / `lora_te2_`,
sgm UNet blocks), then the metadata (`ss_base_model_version`, `ss_v2`, `modelspec.architecture`),
then the width of the UNet's cross-attention input or the text encoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ArchNames:
    """What one family is called, by whom."""

    id: str  # sd1 | sd2 | sdxl | flux-dev | flux-schnell | chroma
    label: str  # SD1 | SD2 | SDXL | Flux: the WebUI card's "sd version" and the tab's text
    title: str  # SD 1.x | SD 2.x | SDXL: in messages and `lora_train inspect`
    base_model_version: str  # ss_base_model_version (A1111 files the LoRA by it) ...
    base_model_version_v: str  # ... of a v-prediction base
    modelspec: str  # modelspec.architecture of a LoRA, without the `/lora` ...
    modelspec_v: str  # ... of a v-prediction base
    checkpoint_marker: str  # a tensor-name prefix only this family's single-file checkpoints have (Flux: all-in-one)
    unet_context_width: int  # in-features of the UNet's cross-attention keys (0: no UNet)
    text_encoder_width: int | None  # of its single text encoder (SDXL has two)
    default_resolution: int  # the training resolution a preset gives it

    def version(self, v_prediction: bool) -> str:
        return self.base_model_version_v if v_prediction else self.base_model_version

    def modelspec_architecture(self, v_prediction: bool) -> str:
        """`modelspec.architecture` of a LoRA trained on this family."""
        return (self.modelspec_v if v_prediction else self.modelspec) + "/lora"


ARCH_NAMES: dict[str, ArchNames] = {names.id: names for names in (
    ArchNames("sd1", "SD1", "SD 1.x", "sd_v1", "sd_v1", "stable-diffusion-v1", "stable-diffusion-v1",
              "cond_stage_model.transformer.", 768, 768, 512),
    ArchNames("sd2", "SD2", "SD 2.x", "sd_v2", "sd_v2_v", "stable-diffusion-v2-512", "stable-diffusion-v2-768-v",
              "cond_stage_model.model.transformer.", 1024, 1024, 768),
    ArchNames("sdxl", "SDXL", "SDXL", "sdxl_base_v1-0", "sdxl_base_v1-0", "stable-diffusion-xl-v1-base",
              "stable-diffusion-xl-v1-base", "conditioner.embedders.1.model.", 2048, None, 1024),
    # Flux: checked in this order by `checkpoint_arch`, so a dev or Chroma file is not taken for schnell.
    ArchNames("flux-dev", "Flux", "Flux.1-dev", "flux1", "flux1", "flux-1-dev", "flux-1-dev",
              "model.diffusion_model.guidance_in.", 0, None, 1024),
    ArchNames("chroma", "Flux", "Chroma", "chroma", "chroma", "chroma", "chroma",
              "model.diffusion_model.distilled_guidance_layer.", 0, None, 1024),
    ArchNames("flux-schnell", "Flux", "Flux.1-schnell", "flux1", "flux1", "flux-1-schnell", "flux-1-schnell",
              "model.diffusion_model.double_blocks.", 0, None, 1024),
)}
FLUX_FAMILIES = ("flux-dev", "flux-schnell", "chroma")
LABELS = tuple(dict.fromkeys(names.label for names in ARCH_NAMES.values()))
_SGM_BLOCKS = ("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")
# Prefixes that identify the family in a header (checked SDXL first: "stable-diffusion-v2" is not one of its prefixes).
_VERSION_PREFIXES = (("sdxl", "sdxl"), ("sd2", "sd_v2"), ("sd1", "sd_v1"))
_MODELSPEC_PREFIXES = (("sdxl", "stable-diffusion-xl"), ("sd2", "stable-diffusion-v2"), ("sd1", "stable-diffusion-v1"),
                       ("flux-dev", "flux-1-dev"), ("flux-schnell", "flux-1-schnell"), ("chroma", "chroma"))
_FLUX_BLOCKS = ("lora_unet_double_blocks_", "lora_unet_single_blocks_")


def arch_of_label(label: str | None) -> ArchNames | None:
    """The family a tab label (SD1 / SD2 / SDXL) stands for, or None."""
    return next((names for names in ARCH_NAMES.values() if names.label == label), None)


def checkpoint_arch(keys: Iterable[str]) -> str | None:
    """sd1 / sd2 / sdxl from a single-file checkpoint's tensor names, or None (a quick look, no checks)."""
    keys = list(keys)
    return next((names.id for names in ARCH_NAMES.values() if any(key.startswith(names.checkpoint_marker) for key in keys)), None)


def arch_from_metadata(metadata: Mapping[str, str]) -> str | None:
    version = metadata.get("ss_base_model_version", "")
    if metadata.get("ss_v2") == "True" and not version.startswith("sdxl"):
        return "sd2"
    found = next((arch for arch, prefix in _VERSION_PREFIXES if version.startswith(prefix)), None)
    spec = metadata.get("modelspec.architecture", "")
    return found or next((arch for arch, prefix in _MODELSPEC_PREFIXES if spec.startswith(prefix)), None)


def _width_arch(shapes: Mapping[str, Sequence[int]]) -> str | None:
    for key, shape in shapes.items():
        if key.startswith("lora_unet_") and key.endswith("attn2_to_k.lora_down.weight"):
            return next((names.id for names in ARCH_NAMES.values() if names.unet_context_width == shape[1]), None)
    for key, shape in shapes.items():
        if key.startswith("lora_te_") and key.endswith("self_attn_q_proj.lora_down.weight"):
            return next((names.id for names in ARCH_NAMES.values() if names.text_encoder_width == shape[1]), None)
    return None


def detect_arch(shapes: Mapping[str, Sequence[int]], metadata: Mapping[str, str] | None = None) -> str | None:
    """The family of a LoRA file from its tensor shapes (key -> shape) and header metadata."""
    if any(key.startswith(_FLUX_BLOCKS) for key in shapes):  # before SDXL: a Flux CLIP-L LoRA is lora_te1_ too
        found = arch_from_metadata(metadata or {})
        return found if found in FLUX_FAMILIES else "flux-dev"
    if any(key.startswith(("lora_te1_", "lora_te2_") + _SGM_BLOCKS) for key in shapes):
        return "sdxl"
    return arch_from_metadata(metadata or {}) or _width_arch(shapes)
