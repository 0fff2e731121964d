"""LoRA key styles -> kohya module names, grouped: `{kohya name: {"lora_down.weight": ..., "alpha": ...}}`.

kohya and LyCORIS files already use kohya names. diffusers / PEFT files name modules by their
path in the pipeline component (`unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`,
`text_encoder.text_model.encoder.layers.0.self_attn.q_proj`, `text_encoder_2....`, or PEFT's
`base_model.model.<path>` for a UNet adapter) with `lora_A` / `lora_B` (or diffusers' older
attention-processor keys, `attn1.processor.to_q_lora.down.weight`). Their alpha is the `.alpha`
key (diffusers' network alphas), the `lora_adapter_metadata` header diffusers writes, or the rank
(scale 1). The family is the first whose text encoders have the file's component names
(`text_encoder_2`: SDXL); where its kohya names use sgm paths, the UNet is named by its original
blocks in the block layout of the family's shipped config (SDXL base's). PEFT keys of another model
(`base_model.model.model.layers.0.self_attn.q_proj`: a text / LLM adapter) are no UNet's:
`model_adapter_key` names one, so the tools can say what the file is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

import torch

from ..core.errors import UserError
from ..families import trained_families
from ..families.interface import Family, UnetParts
from ..kohya.names import KohyaNaming, group_by_module
from ..models.shipped import shipped_config
from .flux_keys import flux_style, from_flux_style

_KOHYA = re.compile(r"^lora_(unet|te|te1|te2)_")
_PEFT_PARTS = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight",
               "lora.down.weight": "lora_down.weight", "lora.up.weight": "lora_up.weight",
               "lora_A.default.weight": "lora_down.weight", "lora_B.default.weight": "lora_up.weight"}
_COMPONENTS = ("text_encoder_2", "text_encoder", "unet", "base_model.model")
_PEFT_MODEL = "base_model.model."
_UNET_ROOTS = ("conv_in", "time_embedding", "add_embedding", "class_embedding", "encoder_hid_proj", "down_blocks",
               "mid_block", "up_blocks", "conv_norm_out", "conv_out")


def _other_model(key: str) -> bool:
    """A PEFT key (`base_model.model.<path>`) whose path is not in a UNet."""
    return key.startswith(_PEFT_MODEL) and key[len(_PEFT_MODEL):].split(".", 1)[0] not in _UNET_ROOTS


def model_adapter_key(keys: Iterable[str]) -> str | None:
    """A PEFT LoRA key of a model other than a UNet (a text / LLM adapter), or None."""
    return next((key for key in keys if _other_model(key) and ".lora_A." in key), None)


def _split_peft_key(key: str) -> tuple[str, str, str] | None:
    """(component, module path, kohya suffix) of a diffusers / PEFT key, or None."""
    component = next((c for c in _COMPONENTS if key.startswith(c + ".")), None)
    if component is None or _other_model(key):
        return None
    rest = key[len(component) + 1:].replace("_lora.down.", ".lora.down.").replace("_lora.up.", ".lora.up.")
    for suffix, kohya in (*_PEFT_PARTS.items(), ("alpha", "alpha")):
        if rest.endswith("." + suffix):
            path = rest[:-len(suffix) - 1].replace(".processor.", ".")
            return ("unet" if component == "base_model.model" else component), path, kohya
    if rest.endswith("lora_magnitude_vector") or ".lora_magnitude_vector." in rest:
        raise UserError(f"{key}: this diffusers / PEFT file holds DoRA magnitudes per output channel, a form the "
                        "WebUI does not load; merge, resize and bake read kohya-format DoRA (dora_scale) only.")
    return None


def _adapter_alphas(metadata: Mapping[str, str]) -> dict[str, tuple[float, int, dict]]:
    """component -> (lora_alpha, r, alpha_pattern) from diffusers' `lora_adapter_metadata` header."""
    try:
        packed = json.loads(metadata.get("lora_adapter_metadata") or "{}")
    except json.JSONDecodeError:
        return {}
    found = {}
    for component in ("unet", "text_encoder", "text_encoder_2"):
        if f"{component}.lora_alpha" in packed:
            found[component] = (float(packed[f"{component}.lora_alpha"]), int(packed.get(f"{component}.r", 0)),
                                packed.get(f"{component}.alpha_pattern") or {})
    return found


def _family_of(components: set[str]) -> Family:
    """The first family whose text encoders' folder names hold the file's text-encoder components."""
    encoders = components - {"unet"}
    return next(row for row in trained_families(UnetParts) if encoders <= {spec.subfolder for spec in row.parts.text_encoders})


def _kohya_name(naming: KohyaNaming, folders: list[str], component: str, path: str) -> str:
    if component == "unet":
        return naming.unet_name(path)
    if not path.startswith("text_model."):  # transformers 5 dropped the level; kohya names keep it
        path = "text_model." + path
    return naming.text_encoder_name(folders.index(component), path)


def _from_peft(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> dict[str, dict[str, torch.Tensor]]:
    split = {key: _split_peft_key(key) for key in tensors}
    found = _family_of({parts[0] for parts in split.values() if parts})
    folders = [spec.subfolder for spec in found.parts.text_encoders]
    naming = KohyaNaming.for_family(found, shipped_config(found.id, False, "unet"), ("",) * len(folders))
    alphas = _adapter_alphas(metadata)
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, parts in split.items():
        if parts is None:
            continue
        component, path, suffix = parts
        try:
            name = _kohya_name(naming, folders, component, path)
        except KeyError:
            raise UserError(f"{key}: the UNet module {path} is not in the block layout of {found.names.title} "
                            "base, so the file cannot be converted to kohya names.") from None
        entry = grouped.setdefault(name, {})
        entry[suffix] = tensors[key]
        if suffix == "lora_down.weight" and "alpha" not in entry and component in alphas:
            alpha, _, pattern = alphas[component]
            match = next((value for pattern_key, value in pattern.items() if path.endswith(pattern_key)), alpha)
            entry["alpha"] = torch.tensor(float(match))
    return grouped


def kohya_style(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
                ) -> tuple[dict[str, dict[str, torch.Tensor]], str]:
    """The tensors grouped by kohya module name, and the key style found (kohya | diffusers | one of the Flux
    styles of `flux_keys.STYLES`)."""
    style = flux_style(tensors)
    if style is not None:
        return from_flux_style(tensors, style), style
    if any(_KOHYA.match(key) for key in tensors):
        return group_by_module({key: value for key, value in tensors.items() if _KOHYA.match(key)}), "kohya"
    converted = _from_peft(tensors, metadata)
    return converted, "diffusers" if converted else "kohya"
