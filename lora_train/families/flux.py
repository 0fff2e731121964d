"""The Flux family on the DiT engine (`dit/`): Flux.1-dev (and Krea-dev, the same tensors), Flux.1-schnell and
Chroma. One transformer in BFL's layout, the 16-channel autoencoder, T5-XXL and (Flux.1) CLIP-L's pooled
output; flow matching; 1024 px.

Names as kohya's sd-scripts write them: `Flux` on the card (Forge's "sd version", Chroma filed under it
too), `flux1` / `chroma` as `ss_base_model_version`, `flux-1-dev` / `flux-1-schnell` / `chroma` as
`modelspec.architecture`. Checkpoints are told by tensor names under any BFL prefix, in this order:
dev has the guidance embedding (`guidance_in`), Chroma the distilled modulation network, schnell only the
blocks every Flux has. A LoRA is Flux's by its block names (checked before SDXL's `lora_te1_`: a Flux
CLIP-L LoRA has those too), the variant by `modelspec.architecture` (dev when nothing says).
"""

from __future__ import annotations

from dataclasses import replace

from .interface import (BlockLayout, DitParts, Family, FolderSignature, KeySignature, LoraSignature, LoraTargets,
                        Names, Objective, Ref, SeparatePart)
from .stable_diffusion import KOHYA_TARGETS

_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.")  # bare, all-in-one, Forge / ComfyUI saves
_BLOCKS = "double_blocks.0.img_attn.norm.key_norm.scale"
_LORA_BLOCKS = ("lora_unet_double_blocks_", "lora_unet_single_blocks_")
BFL = "https://github.com/black-forest-labs/flux"

FLOW = Objective("flow", Ref("lora_train.dit.flow:sample_sigmas"))
ENGINE = Ref("lora_train.dit.trainer:build_flux_loop")
CAPTIONS = Ref("lora_train.dit.text:encode_captions")
# The separate files (BFL's ae.safetensors, ComfyUI's clip_l / t5xxl files) by the tensors their loaders read
# first, and where Forge's all-in-one saves (`save_checkpoint`) keep them.
AE = SeparatePart("ae", "autoencoder (AE)", KeySignature(names=("encoder.down.0.block.0.conv1.weight",)),
                  ("vae.", "first_stage_model."), "VAE", "ae.safetensors")
CLIP_L = SeparatePart("clip_l", "CLIP-L text encoder",
                      KeySignature(names=("text_model.embeddings.token_embedding.weight",)),
                      ("text_encoders.clip_l.transformer.",), "text_encoder", "clip_l.safetensors")
T5XXL = SeparatePart("t5xxl", "T5-XXL text encoder",
                     KeySignature(names=("encoder.block.0.layer.0.SelfAttention.q.weight",)),
                     ("text_encoders.t5xxl.transformer.",), "text_encoder", "t5xxl_fp16.safetensors")
_DOUBLE_IDS = tuple(f"D{index:02d}" for index in range(19))
_SINGLE_IDS = tuple(f"S{index:02d}" for index in range(38))
# SuperMerger's and LoRA Block Weight's Flux list (BLOCKIDFLUX): CLIP-L, T5, the input embedders, the 19 double and
# 38 single blocks, the final layer
FLUX_BLOCKS = BlockLayout(blocks=("CLIP", "T5", "IN", *_DOUBLE_IDS, *_SINGLE_IDS, "OUT"),
                          groups=(("base", ("CLIP", "T5")), ("double", _DOUBLE_IDS), ("single", _SINGLE_IDS)))
FLOW_HEADER = ("ss_timestep_sampling", "ss_sigmoid_scale", "ss_discrete_flow_shift", "ss_logit_mean", "ss_logit_std",
               "ss_weighting_scheme", "ss_guidance_scale", "ss_model_prediction_type", "ss_apply_t5_attn_mask",
               "ss_t5xxl_max_token_length")  # the flow settings kohya's Flux trainer (and ours) records
PRESETS = ("flux_24gb", "flux_16gb", "flux_12gb", "flux_8gb")  # memory presets (config/presets.py)
FLUX_PARTS = DitParts(Ref("diffusers:FluxTransformer2DModel"), ("text_encoder", "text_encoder_2"),
                      distilled_modulation=False, t5_max_length=512, masked_text=False, sampling_shift=True,
                      true_cfg=False, model_type="flux", separate=(AE, CLIP_L, T5XXL))


def _targets(double: str, single: str) -> LoraTargets:
    """The transformer's blocks (the DiT engine picks their linears by kind, `flux_targets`: dit/targets.py) and
    CLIP-L's attention / MLP classes, as for the UNet families."""
    return LoraTargets(unet_blocks=(double, single), locon_blocks=(),
                       text_encoder_blocks=KOHYA_TARGETS.text_encoder_blocks)


def _under_prefixes(*names: str) -> KeySignature:
    return KeySignature(names=tuple(prefix + name for name in names for prefix in _PREFIXES))


def _flux1(id: str, title: str, modelspec: str, checkpoint: KeySignature, guidance: bool, parts: DitParts) -> Family:
    return Family(
        id=id,
        names=Names(label="Flux", title=title, base_model_version="flux1", modelspec=modelspec, implementation=BFL),
        default_resolution=1024,
        checkpoint=checkpoint,
        folder=FolderSignature("FluxPipeline", (("transformer/config.json", "guidance_embeds", guidance),)),
        lora=LoraSignature(key_prefixes=_LORA_BLOCKS, header=(("modelspec.architecture", modelspec),)),
        objective=FLOW, conditioning=CAPTIONS, targets=_targets("FluxTransformerBlock", "FluxSingleTransformerBlock"),
        blocks=FLUX_BLOCKS, parts=parts, engine=ENGINE, presets=PRESETS)


FAMILIES = (
    _flux1("flux-dev", "Flux.1-dev", "flux-1-dev", _under_prefixes("guidance_in.in_layer.weight"), True, FLUX_PARTS),
    Family(
        id="chroma",
        names=Names(label="Flux", title="Chroma", base_model_version="chroma", modelspec="chroma",
                    implementation="https://huggingface.co/lodestones/Chroma"),
        default_resolution=1024,
        checkpoint=_under_prefixes("distilled_guidance_layer.in_proj.weight"),
        # Forge saves Chroma as a FluxPipeline with a ChromaTransformer2DModel
        folder=FolderSignature("ChromaPipeline", (("model_index.json", "transformer",
                                                   ["diffusers", "ChromaTransformer2DModel"]),),
                               other_pipelines=("FluxPipeline",)),
        lora=LoraSignature(key_prefixes=_LORA_BLOCKS, header=(("ss_base_model_version", "chroma"),
                                                              ("modelspec.architecture", "chroma"))),
        objective=FLOW, conditioning=CAPTIONS,
        targets=_targets("ChromaTransformerBlock", "ChromaSingleTransformerBlock"), blocks=FLUX_BLOCKS,
        parts=DitParts(Ref("diffusers:ChromaTransformer2DModel"), (None, "text_encoder"), distilled_modulation=True,
                       t5_max_length=512, masked_text=True, sampling_shift=True, true_cfg=True, model_type="chroma",
                       separate=(AE, T5XXL)),
        engine=ENGINE, presets=PRESETS),
    _flux1("flux-schnell", "Flux.1-schnell", "flux-1-schnell", _under_prefixes(_BLOCKS), False,
           replace(FLUX_PARTS, t5_max_length=256, sampling_shift=False)),
)
