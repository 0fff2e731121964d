"""The header of a LoRA made from other LoRAs (merge, resize): what it is for, its shape, where it came from.

The base-model keys (`ss_base_model_version`, `modelspec.architecture`, ...) come from the first
input that has them, else from the detected family's names (those of an epsilon base), so the WebUI
still files the result under SD1 / SD2 / SDXL / Flux; so do a Flux LoRA's flow settings (`ss_timestep_sampling`, ...). `ss_network_dim` / `ss_network_alpha` describe the new
tensors; trigger phrases and tag frequencies of the inputs are kept (the card's tag list). The hashes
are added by `save_lora`.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..families import family
from ..families.flux import FLOW_HEADER
from ..kohya.metadata import MODELSPEC_VERSION, NETWORK_MODULE
from .lora_file import LoraFile, LoraModule

_BASE_KEYS = ("ss_base_model_version", "ss_v2", "ss_sd_model_name", "ss_resolution", "modelspec.architecture",
              "modelspec.implementation", "modelspec.prediction_type", "modelspec.resolution", *FLOW_HEADER)


def _shape(modules: Mapping[str, LoraModule]) -> dict[str, str]:
    linear = [module for module in modules.values() if not module.is_conv]
    conv = [module for module in modules.values() if module.is_conv]
    widest = max(linear or conv, key=lambda module: module.rank)
    shape = {"ss_network_dim": str(widest.rank), "ss_network_alpha": str(float(widest.alpha))}
    if conv and linear:
        widest_conv = max(conv, key=lambda module: module.rank)
        shape["ss_network_args"] = json.dumps({"conv_dim": str(widest_conv.rank),
                                               "conv_alpha": str(float(widest_conv.alpha))})
    return shape


def _tag_frequency(files: Iterable[LoraFile]) -> str:
    merged: dict[str, dict] = {}
    for file in files:
        try:
            folders = json.loads(file.metadata.get("ss_tag_frequency") or "{}")
        except json.JSONDecodeError:
            continue
        if isinstance(folders, dict):
            merged.update({f"{file.path.stem}/{folder}": tags for folder, tags in folders.items()})
    return json.dumps(merged)


def derived_metadata(inputs: list[LoraFile], modules: Mapping[str, LoraModule], out: Path, comment: str,
                     provenance: list[dict]) -> dict[str, str]:
    """The header for `out`, made from `inputs` (the first one's base-model keys win)."""
    metadata: dict[str, str] = {}
    for file in reversed(inputs):
        metadata.update({key: file.metadata[key] for key in _BASE_KEYS if key in file.metadata})
    arch = next((file.arch for file in inputs if file.arch), None)
    if arch and "ss_base_model_version" not in metadata:
        names = family(arch).names
        metadata.update(ss_base_model_version=names.version(False), ss_v2=str(names.v2))
        metadata.setdefault("modelspec.architecture", names.modelspec_architecture(False))
    triggers = [file.metadata.get("modelspec.trigger_phrase", "") for file in inputs]
    stem = out.name.removesuffix(".safetensors")
    metadata.update({
        "ss_network_module": NETWORK_MODULE, **_shape(modules), "ss_output_name": stem,
        "ss_training_comment": comment, "ss_tag_frequency": _tag_frequency(inputs),
        "ss_lora_tools": json.dumps(provenance),
        "modelspec.sai_model_spec": MODELSPEC_VERSION, "modelspec.title": stem,
        "modelspec.date": datetime.datetime.now().replace(microsecond=0).isoformat(),
    })
    if any(triggers):
        metadata["modelspec.trigger_phrase"] = ", ".join(dict.fromkeys(word for word in triggers if word))
    return metadata
