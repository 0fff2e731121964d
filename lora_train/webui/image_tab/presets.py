"""The engine's presets (`lora_train.config.presets`) as the tab offers them, and the Auto preset.

Choosing a preset first puts every key that any preset sets back to its default, so that
switching presets never leaves a value of the previous one behind; the resolution follows the
base model's type, and so does the list: each family names its presets (`Family.presets`: Flux's memory
presets for Flux.1 and Chroma, the others for Stable Diffusion). Auto
(`auto_form_values`) proposes settings from the form's dataset, its base model's family and the GPU memory a
job can have (`lora_train plan`'s rules, docs/plan.md), one reason per key, for the families those rules cover.
"""

from __future__ import annotations

from typing import Any

from ...config.auto_plan import make_plan
from ...config.auto_preset import PROPOSED_KEYS, has_rules
from ...config.load import default_value
from ...config.presets import PRESETS, preset_values
from ...families import Family, family_of_label, family_or_default

LABELS = {"character": "Character", "style": "Style", "concept": "Concept", "low_vram": "Low VRAM",
          "flux_24gb": "Flux 24 GB", "flux_16gb": "Flux 16 GB", "flux_12gb": "Flux 12 GB", "flux_8gb": "Flux 8 GB"}
CHOICES = list(LABELS.values())  # every preset: the host's default-preset setting, the list before a model is chosen
DEFAULT_PRESET = LABELS[family_or_default(None).presets[0]]
AUTO_PRESET = "Auto (from the dataset)"  # offered in the dropdown only: it needs the form's dataset


def _family(arch: str | None) -> Family:
    return family_of_label(arch) or family_or_default(None)


def preset_choices(arch: str | None) -> list[str]:
    """The presets offered for a base model of type `arch` (its tab label SD1, SD2, SDXL, Flux, or None)."""
    family = _family(arch)
    return [LABELS.get(name, name) for name in family.presets] + ([AUTO_PRESET] if has_rules(family) else [])


def preset_form_values(label: str, arch: str | None) -> dict[str, Any]:
    """The form values for preset `label` on a base model of type `arch`; a preset not offered for it is refused."""
    name = next((key for key, shown in LABELS.items() if shown == label), label)
    values = {key: default_value(key) for preset in PRESETS.values() for key in preset}
    values.update(preset_values(name, _family(arch)))
    values["resolution"] = _family(arch).default_resolution
    return values


def auto_form_values(form: dict[str, Any], free_memory: int | None) -> tuple[dict[str, Any], list[str]]:
    """(the form values of the Auto preset, one line per proposal and per dataset finding) for the form's
    config values `form` (with `base_model` and `train_data_dir`); its other keys are kept and reasoned with."""
    kept = {key: value for key, value in form.items() if key not in PROPOSED_KEYS and value is not None}
    plan = make_plan(kept, "the form", free_memory)
    values = {key: default_value(key) for key in PROPOSED_KEYS}
    values.update({proposal.key: proposal.value for proposal in plan.proposals})
    lines = [f"{proposal.key} = {proposal.value}: {proposal.reason}" for proposal in plan.proposals]
    return values, [*plan.notes, *lines, *(f"Dataset: {finding.message}" for finding in plan.findings)]
