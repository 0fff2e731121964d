"""`pretrained_lora` for Flux: a kohya-format Flux LoRA (ours, kohya's, or any with BFL's `lora_unet_` names)
read back into the LoRA layers of a fresh run, each fused module split over diffusers' parts exactly
(`lora_file.split`), CLIP-L's `lora_te1_` modules as they are. The family check and the messages are the
UNet engine's (`models/pretrained_lora.py`), which calls this with the file's tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..adapters.layers import lora_layers, write_layer
from ..adapters.targets import text_encoder_root
from ..families import family
from ..kohya.names import group_by_module
from ..kohya.state import LoadReport, layer_weights
from .flux_layout import bfl_modules
from .lora_file import split


def load_flux_state_dict(arch: str, transformer: nn.Module, text_encoders: Sequence[nn.Module],
                         state: Mapping[str, torch.Tensor]) -> LoadReport:
    """Set the injected layers from a Flux LoRA's tensors; modules (or fused parts with a non-zero update) that no
    injected layer takes are reported, as are injected layers the file leaves fresh."""
    fused = {"lora_unet_" + module.bfl.replace(".", "_"): module
             for module in bfl_modules(transformer.config, chroma=family(arch).parts.distilled_modulation)}
    layers = dict(lora_layers(transformer))
    modules = dict(transformer.named_modules())
    clip = {f"lora_te1_{(text_encoder_root(te) + path).replace('.', '_')}": layer
            for te in text_encoders for path, layer in lora_layers(te)}
    report, loaded_layers = LoadReport(), set()
    for name, tensors in group_by_module(state).items():
        weights = layer_weights(name, tensors) if {"lora_down.weight", "lora_up.weight"} <= tensors.keys() else None
        if weights is not None and name in clip:
            write_layer(clip[name], weights, name)
            report.loaded.append(name)
            continue
        if weights is None or name not in fused:
            report.unmatched.append(name)
            continue
        module = fused[name]
        parts = split(module, weights, [modules[part].out_features for part in module.parts])
        for index, part in parts.items():
            path = module.parts[index]
            if path in layers:
                write_layer(layers[path], part, f"{name} ({path})")
                loaded_layers.add(path)
            elif part.up.any():
                report.unmatched.append(f"{name} ({path})")
        if any(module.parts[index] in layers for index in parts):
            report.loaded.append(name)
    report.not_in_file = [path for path in layers if path not in loaded_layers] + [
        name for name in clip if name not in report.loaded]
    return report
