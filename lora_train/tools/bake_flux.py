"""`bake` into a Flux.1 / Chroma checkpoint: the base as BFL's single file holds it, and where each LoRA module goes.

The file may be the transformer alone (bare or under `model.diffusion_model.` / `diffusion_model.`) or all in one
(with the autoencoder, CLIP-L and T5); every tensor keeps its name and dtype (fp8 stays fp8: each changed weight is
computed in fp32 and cast back), so the output is the same layout as the input. A kohya Flux module names its BFL
module (`lora_unet_double_blocks_0_img_attn_qkv` -> `double_blocks.0.img_attn.qkv.weight`, fused q / k / v in one
product), CLIP-L's `lora_te1_text_model_...` the CLIP-L of an all-in-one file. A diffusers folder and "scaled" fp8
files (per-tensor `scale_weight`) are refused with what to give instead.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from ..dit.detect import FluxCheckpoint
from ..dit.flux_layout import bfl_modules
from ..dit.source import flux_source
from ..models.checkpoint_file import open_checkpoint
from .checkpoint_targets import Target

BFL_LAYOUT = "single-file (BFL)"


def _clip_targets(keys, prefix: str) -> dict[str, Target]:
    """CLIP-L's linears in an all-in-one file (`text_encoders.clip_l.transformer.text_model...`) by kohya name."""
    targets = {}
    for key in keys:
        if key.startswith(prefix) and key.endswith(("_proj.weight", ".fc1.weight", ".fc2.weight")):
            path = key[len(prefix):].removesuffix(".weight")
            path = path if path.startswith("text_model.") else "text_model." + path
            targets["lora_te1_" + path.replace(".", "_")] = Target(key)
    return targets


def flux_targets(keys, checkpoint: FluxCheckpoint) -> dict[str, Target]:
    """kohya module name -> the weight it changes, for every linear of the transformer (and CLIP-L, when there)."""
    modules = bfl_modules(checkpoint.config, chroma=checkpoint.family.parts.distilled_modulation)
    targets = {"lora_unet_" + module.bfl.replace(".", "_"): Target(f"{checkpoint.prefix}{module.bfl}.weight")
               for module in modules if module.kind != "norm"}
    if "clip_l" in checkpoint.parts:
        targets.update(_clip_targets(keys, checkpoint.parts["clip_l"]))
    return targets


def flux_base(path: Path):
    """The base's BaseWeights (bake.py) when `path` is a Flux-family model, else None."""
    from .bake import BaseWeights

    source = flux_source(path)
    if source is None:
        return None
    title = source.family.names.title
    if source.checkpoint is None:
        raise UserError(f"{path} is a {title} diffusers folder: bake writes Flux LoRAs into BFL's single file, the "
                        "one Forge and ComfyUI load (flux1-dev.safetensors in models/Stable-diffusion or "
                        "models/unet). Give that file as the base.")
    checkpoint = open_checkpoint(path)
    if any(key.endswith(("scale_weight", "scaled_fp8")) for key in checkpoint.meta):
        raise UserError(f"{path} is a 'scaled' fp8 {title} file (per-tensor scale_weight tensors), which bake does not "
                        "write yet: bake into the bf16 / fp16 or the plain fp8_e4m3fn file.")
    targets = flux_targets(checkpoint.meta, source.checkpoint)
    return BaseWeights(checkpoint.read(""), dict(checkpoint.metadata), source.family.id, {}, BFL_LAYOUT,
                       targets=targets)
