"""kohya's names for LoRA modules and tensors, as A1111, Forge, ComfyUI and diffusers read them.

A module's name is its prefix plus its path with `.` replaced by `_`:
- UNet: `lora_unet_`, then the path the family's `unet_lora_names` says. SD1 / SD2 use the diffusers
  path (kohya trains those on a diffusers-named UNet):
  `lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`; SDXL the original (sgm) path,
  as kohya's SDXL UNet names it: `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`.
- Text encoders: `lora_te_` for the single one of SD1 / SD2, `lora_te1_` / `lora_te2_` for SDXL's
  two, then the path under transformers 4's layout: `lora_te2_text_model_encoder_layers_31_mlp_fc2`.
  transformers 5's `CLIPTextModel` has no `text_model` level (`encoder.layers.0...`), so the
  `text_model.` the loaders expect is put back; `CLIPTextModelWithProjection` still has it.
Each module has `<name>.lora_down.weight`, `<name>.lora_up.weight`, `<name>.alpha` and, for DoRA,
`<name>.dora_scale`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..adapters.targets import text_encoder_root
from ..families import family
from ..families.interface import Family
from ..models.unet_layout import block_prefixes, to_original

UNET_PREFIX = "lora_unet"
DOWN, UP, ALPHA, DORA_SCALE = "lora_down.weight", "lora_up.weight", "alpha", "dora_scale"
COMPONENTS = ("unet", "te", "te1", "te2", "other")  # kohya prefixes without `lora_`


def text_encoder_prefixes(count: int) -> tuple[str, ...]:
    """`lora_te` for one text encoder, `lora_te1`, `lora_te2` for two."""
    return ("lora_te",) if count == 1 else tuple(f"lora_te{i + 1}" for i in range(count))


@dataclass(frozen=True)
class KohyaNaming:
    """Module path -> kohya module name for one model's components."""

    text_encoder_roots: tuple[str, ...]  # per text encoder: "" or the "text_model." its paths lack
    unet_blocks: Mapping[str, str] | None = None  # diffusers -> sgm block prefixes, where the family names by sgm

    @classmethod
    def for_model(cls, arch: str, unet: nn.Module, text_encoders: Sequence[nn.Module]) -> "KohyaNaming":
        return cls.for_family(family(arch), unet.config, tuple(text_encoder_root(te) for te in text_encoders))

    @classmethod
    def for_family(cls, found: Family, unet_config: Mapping, text_encoder_roots: tuple[str, ...]) -> "KohyaNaming":
        """The names of a model of family `found` whose UNet has `unet_config`."""
        sgm = found.parts.unet_lora_names == "sgm"
        return cls(text_encoder_roots, block_prefixes(unet_config) if sgm else None)

    def unet_name(self, path: str) -> str:
        original = to_original(path, self.unet_blocks) if self.unet_blocks is not None else path
        return f"{UNET_PREFIX}_{original.replace('.', '_')}"

    def text_encoder_name(self, index: int, path: str) -> str:
        prefix = text_encoder_prefixes(len(self.text_encoder_roots))[index]
        return f"{prefix}_{(self.text_encoder_roots[index] + path).replace('.', '_')}"


def group_by_module(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """kohya module name -> {tensor suffix (`lora_down.weight`, `alpha`, ...): tensor}."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        name, _, suffix = key.partition(".")
        modules.setdefault(name, {})[suffix] = value
    return modules


def component_of(name: str) -> str:
    """`unet`, `te`, `te1`, `te2` (the prefix without `lora_`), or `other` for a non-kohya name."""
    head = name.split("_", 2)
    return head[1] if len(head) == 3 and head[0] == "lora" and head[1] in COMPONENTS else "other"


def count_by_component(names: Iterable[str]) -> dict[str, int]:
    """Module count per component, in the order of COMPONENTS, components with none left out."""
    components = [component_of(name) for name in names]
    return {part: components.count(part) for part in COMPONENTS if part in components}
