"""Which family a file is for, from what the families declare: a single-file checkpoint from its tensor names,
a diffusers folder from its pipeline class and part configs, a kohya-format LoRA from its module names,
header and widths. Torch-free: names and shapes as a safetensors header gives them.

The LoRA sniffer looks, in order, at module names only some families' files have (Flux's double / single
blocks, then SDXL's `lora_te1_` / `lora_te2_` and sgm blocks; among those the header decides), then the header (`ss_base_model_version`, then `ss_v2`, then
`modelspec.architecture`), then the width of the UNet's cross-attention input or of the text encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from . import all_families, trained_families
from .interface import Family, NotTrained

HEADER_KEYS = ("ss_base_model_version", "ss_v2", "modelspec.architecture")  # the order the header is read in


def checkpoint_family(keys: Iterable[str]) -> Family | NotTrained | None:
    """The first row (detection order) whose tensor names a single-file checkpoint has, or None."""
    names = set(keys)
    return next((row for row in all_families() if row.checkpoint.matches(names)), None)


def folder_family(pipeline: str, part_config: Callable[[str], Mapping[str, object]]) -> Family | None:
    """The family of a diffusers folder whose model_index.json names `pipeline`; `part_config(file)` reads one
    of its part configs (`text_encoder/config.json`) where two families share the pipeline."""
    for row in trained_families():
        if row.folder.holds(pipeline) and all(part_config(file).get(key) == value
                                                   for file, key, value in row.folder.config):
            return row
    return None


def _by_header(candidates: Sequence[Family], metadata: Mapping[str, str]) -> Family | None:
    for key in HEADER_KEYS:
        value = metadata.get(key, "")
        for row in candidates:
            if any(name == key and value.startswith(prefix) for name, prefix in row.lora.header):
                return row
    return None


def _by_width(candidates: Sequence[Family], shapes: Mapping[str, Sequence[int]]) -> Family | None:
    for key, shape in shapes.items():
        if key.startswith("lora_unet_") and key.endswith("attn2_to_k.lora_down.weight"):
            return next((row for row in candidates if row.lora.unet_context_width == shape[1]), None)
    for key, shape in shapes.items():
        if key.startswith("lora_te_") and key.endswith("self_attn_q_proj.lora_down.weight"):
            return next((row for row in candidates if row.lora.text_encoder_width == shape[1]), None)
    return None


def lora_family(shapes: Mapping[str, Sequence[int]], metadata: Mapping[str, str] | None = None) -> Family | None:
    """The family a kohya-format LoRA file is for, from its tensor shapes (key -> shape) and header; None when
    nothing tells."""
    metadata, trained = metadata or {}, trained_families()
    marked = [row for row in trained if row.lora.key_prefixes and any(key.startswith(row.lora.key_prefixes)
                                                                      for key in shapes)]
    if marked:
        return _by_header(marked, metadata) or marked[0]
    return _by_header(trained, metadata) or _by_width(trained, shapes)
