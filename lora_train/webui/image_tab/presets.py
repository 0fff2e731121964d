"""The engine's presets (`lora_train.config.presets`) as the tab offers them.

Choosing a preset first puts every key that any preset sets back to its default, so that
switching presets never leaves a value of the previous one behind; the resolution follows the
base model's type.
"""

from __future__ import annotations

from typing import Any

from ...config.load import default_value
from ...config.presets import PRESETS, preset_values
from ...families import family_of_label, family_or_default

LABELS = {"character": "Character", "style": "Style", "concept": "Concept", "low_vram": "Low VRAM"}
CHOICES = [LABELS.get(name, name) for name in PRESETS]
DEFAULT_PRESET = CHOICES[0]


def preset_form_values(label: str, arch: str | None) -> dict[str, Any]:
    """The form values for preset `label` on a base model of type `arch` (its tab label SD1, SD2, SDXL, or None)."""
    name = next((key for key, shown in LABELS.items() if shown == label), label)
    values = {key: default_value(key) for preset in PRESETS.values() for key in preset}
    values.update(preset_values(name))
    values["resolution"] = (family_of_label(arch) or family_or_default(None)).default_resolution
    return values
