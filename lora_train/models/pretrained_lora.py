"""`pretrained_lora`: continue training from a kohya-format LoRA file (ours or kohya's).

The file must be for the same model family as the base (an SDXL LoRA cannot continue on an
SD 1.x checkpoint); each module keeps the file's rank and alpha. Modules the file has but the
run does not train (text-encoder keys with `train_text_encoder: false`, LoCon convs with plain
LoRA, ...) are reported back for a warning; a file of which nothing fits is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from torch import nn

from ..core.errors import UserError
from ..families import family
from ..families.recognise import lora_family
from ..kohya.state import LoadReport, load_kohya_state_dict
from ..kohya.read import read_lora_file

StateLoader = Callable[[str, nn.Module, Sequence[nn.Module], Mapping[str, torch.Tensor]], LoadReport]


def load_pretrained_lora(path: str | Path, arch: str, unet: nn.Module, text_encoders: Sequence[nn.Module],
                         load_state: StateLoader = load_kohya_state_dict) -> LoadReport:
    """Load the file into freshly injected components (then collect their parameters again) with `load_state`
    (the UNet families' kohya names by default; the DiT engine gives Flux's). Families that share their
    `ss_base_model_version` (Flux.1-dev and schnell) take each other's LoRAs."""
    state, metadata = read_lora_file(path)
    found, base = lora_family({key: tuple(value.shape) for key, value in state.items()}, metadata), family(arch)
    if found is not None and found.names.base_model_version != base.names.base_model_version:
        raise UserError(f"pretrained_lora {path} is a LoRA for {found.names.title} models, but the base model "
                        f"is {base.names.title}: continue from a LoRA trained on the same kind of model.")
    report = load_state(arch, unet, text_encoders, state)
    if not report.loaded:
        raise UserError(f"pretrained_lora {path}: none of its {len(report.unmatched)} modules matches a layer "
                        f"being trained (e.g. {', '.join(report.unmatched[:3])}). Is it a kohya-format LoRA for "
                        "this model, and are train_unet / train_text_encoder / network_type set as when it was made?")
    return report
