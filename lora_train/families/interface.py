"""What a model family declares: the interface each module under `families/` fills in, torch-free.

A `Family` is everything the engines ask of one kind of base model (SD1, SD2, SDXL; Flux.1, Chroma): how
its files are recognised, what it is called where, which engine trains it, how it is conditioned and
trained, which layers a LoRA adapts, how its LoRA modules are named, and how its parts are loaded, sampled
and written back (`UnetParts` for the UNet engine, `DitParts` for the DiT engine).
A `NotTrained` row is a family that is recognised only to be refused by name.

The tables hold no torch: what must run engine code names it with a `Ref` (`"package.module:name"`),
imported on first use, so the WebUI's process reads labels and sniffs files without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Ref:
    """An object of the engine (a function, class or instance) named by its import path, loaded on first use."""

    path: str  # "package.module:name"

    def load(self) -> Any:
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Names:
    """What one family is called, by whom."""

    label: str  # SD1: the WebUI card's "sd version" and the tab's text
    title: str  # SD 1.x: in messages and `lora_train inspect`
    base_model_version: str  # a LoRA's ss_base_model_version (A1111 files the LoRA by it) ...
    modelspec: str  # ... and its modelspec.architecture, without the `/lora`
    base_model_version_v: str = ""  # of a v-prediction base, where it differs
    modelspec_v: str = ""
    v2: bool = False  # kohya's ss_v2
    implementation: str = "diffusers"  # modelspec.implementation

    def version(self, v_prediction: bool) -> str:
        return (v_prediction and self.base_model_version_v) or self.base_model_version

    def modelspec_architecture(self, v_prediction: bool) -> str:
        """`modelspec.architecture` of a LoRA trained on this family."""
        return ((v_prediction and self.modelspec_v) or self.modelspec) + "/lora"


@dataclass(frozen=True)
class KeySignature:
    """The tensor names that tell a family's single-file checkpoints: every prefix starts some name, and (when
    `names` are given) one of `names` is a tensor name."""

    prefixes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.prefixes or self.names):
            raise ValueError("a KeySignature needs prefixes or names")

    def matches(self, keys: Collection[str]) -> bool:
        return (all(any(key.startswith(prefix) for key in keys) for prefix in self.prefixes)
                and (not self.names or any(name in keys for name in self.names)))


@dataclass(frozen=True)
class FolderSignature:
    """How a diffusers folder of the family looks: its pipeline class in model_index.json and, where two
    families share one, values in a part's config (`(file, key, value)`: text_encoder/config.json's
    hidden_act)."""

    pipeline: str
    config: tuple[tuple[str, str, object], ...] = ()
    other_pipelines: tuple[str, ...] = ()  # classes other tools save it under (Forge: Chroma as a FluxPipeline)

    def holds(self, pipeline: str) -> bool:
        return pipeline in (self.pipeline, *self.other_pipelines)


@dataclass(frozen=True)
class LoraSignature:
    """How a kohya-format LoRA file for the family is told from others."""

    key_prefixes: tuple[str, ...] = ()  # module names only this family's files have (lora_te1_ for SDXL)
    header: tuple[tuple[str, str], ...] = ()  # (metadata key, value prefix) that name the family
    unet_context_width: int | None = None  # in-features of the UNet's cross-attention keys
    text_encoder_width: int | None = None  # of its single text encoder (None with two)


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder, in pipeline order."""

    ldm_prefix: str  # where its weights sit in a single-file checkpoint
    open_clip: bool  # OpenCLIP layout (resblocks, fused in_proj) rather than Hugging Face CLIP
    model_class: Ref  # the transformers class
    subfolder: str  # diffusers folder name (and pipeline argument); the tokenizer's is the same with "tokenizer"
    pad_token: str
    # SD2 uses OpenCLIP's penultimate layer: checkpoints hold one block more than the diffusers model.
    unused_last_layer: bool = False

    @property
    def tokenizer_subfolder(self) -> str:
        return self.subfolder.replace("text_encoder", "tokenizer")


@dataclass(frozen=True)
class Objective:
    """What the model learns to predict and how training draws its timesteps."""

    prediction: Literal["epsilon", "v_prediction", "flow"]  # when the model's files say nothing
    timesteps: Ref  # the sampler of training timesteps (noise levels)
    probe_v_prediction: bool = False  # SD2: when nothing says, run the WebUI's test for v models


@dataclass(frozen=True)
class LoraTargets:
    """Where kohya's LoRA goes: the Linear / Conv2d layers inside these module classes."""

    unet_blocks: tuple[str, ...]  # the `unet_targets` kinds split these (attention, feed_forward, projection)
    locon_blocks: tuple[str, ...]  # added by network_type locon
    text_encoder_blocks: tuple[tuple[str, str], ...]  # (class, `text_encoder_targets` kind)


@dataclass(frozen=True)
class BlockLayout:
    """The blocks a per-block weight list names (LoRA Block Weight, SuperMerger), and its presets' groups."""

    blocks: tuple[str, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]  # (group, its blocks): base, in_shallow, in_deep, ...


@dataclass(frozen=True)
class UnetParts:
    """What the UNet engine (models/, the loop, bake) reads: the parts in the original (ldm / sgm) layout."""

    text_encoders: tuple[TextEncoderSpec, ...]
    pipeline_options: tuple[tuple[str, object], ...]  # what its pipeline class is built with besides the parts
    configs: str  # the folder under models/configs/ with its diffusers configs ...
    unet_lora_names: Literal["diffusers", "sgm"]  # kohya names UNet modules by their diffusers or sgm path
    configs_v: str = ""  # ... of a v-prediction base, where it differs
    vae_fp32: bool = False  # the VAE stays fp32 in training (SDXL's overflows in fp16)
    schedule_buffers: bool = False  # its files carry DDPM's betas / alphas_cumprod (SD1 / SD2), bake writes them

    def config_folder(self, v_prediction: bool) -> str:
        return (v_prediction and self.configs_v) or self.configs


@dataclass(frozen=True)
class SeparatePart:
    """A part of the base model that may come as a file of its own (Forge's "VAE / Text Encoder" selector loads
    such files with the checkpoint): its config key, what it is called, the tensor names of its own file, where
    an all-in-one checkpoint holds it, and where a WebUI keeps it."""

    key: str  # the config key that names its file (kohya's --ae, --clip_l, --t5xxl)
    title: str  # in messages: autoencoder (AE)
    file: KeySignature  # the tensor names of its own file
    inside: tuple[str, ...]  # the prefixes of its tensors in an all-in-one checkpoint
    folder: str  # the folder under models/ where Forge's selector finds it: VAE | text_encoder
    usual_name: str  # the file users have: ae.safetensors


@dataclass(frozen=True)
class DitParts:
    """What the DiT engine (`dit/`) reads: a Flux-like transformer (BFL's single-file layout), its autoencoder and
    its text encoders (T5, and CLIP-L's pooled output where the family has it)."""

    transformer_class: Ref  # the diffusers class
    text_folders: tuple[str | None, str]  # (CLIP-L, T5) subfolders of a diffusers folder; no CLIP-L: None
    distilled_modulation: bool  # one modulation network (distilled_guidance_layer) instead of each block's own
    t5_max_length: int  # kohya's default t5xxl_max_token_length
    # T5's padding always masked, the transformer given its pipeline's mask (the text up to and including the
    # first padding token) as `attention_mask`; otherwise masking is kohya's apply_t5_attn_mask, off by default
    masked_text: bool
    sampling_shift: bool  # its sampler shifts sigma by image size (dev, Chroma; schnell: not)
    true_cfg: bool  # samples with classifier-free guidance and the negative prompt, not an embedded guidance
    model_type: str  # kohya's ss_model_type
    vae_fp32: bool = True  # the autoencoder stays fp32
    separate: tuple[SeparatePart, ...] = ()  # the parts besides the transformer, each a file or in the checkpoint

    @property
    def clip_l(self) -> bool:
        return self.text_folders[0] is not None


@dataclass(frozen=True)
class Family:
    """A model family lora_train trains."""

    id: str  # sd1: in configs' code paths, `inspect --json`, fixtures
    names: Names
    default_resolution: int  # what a preset trains it at
    checkpoint: KeySignature
    folder: FolderSignature
    lora: LoraSignature
    objective: Objective
    # the UNet engine's: an object with encode(text_encoders, input_ids, clip_skip) and unet_inputs(text, batch,
    # device); the DiT engine's: its caption encoder
    conditioning: Ref
    targets: LoraTargets
    blocks: BlockLayout  # of a per-block weight list; no blocks: the family takes none
    parts: UnetParts | DitParts
    engine: Ref  # its loop builder, (config, session, stop) -> the image loop: what `train` runs for it
    # the presets offered for it (names in config/presets.py): the tab's list, and what a preset is refused for
    presets: tuple[str, ...] = ("character", "style", "concept", "low_vram")
    trained: bool = field(default=True, init=False)


@dataclass(frozen=True)
class NotTrained:
    """A family that is recognised only to be refused by name."""

    id: str
    title: str
    checkpoint: KeySignature
    trained: bool = field(default=False, init=False)
