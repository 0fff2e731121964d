"""Starting points for text LoRAs, as the LLM tab's preset choice fills them in.

Values from the usual LoRA guidance (rank 8-16, alpha twice the rank, learning rate 1e-4..3e-4, a few
epochs); a preset first puts every key any preset sets back to the text schema's default, so switching
presets never leaves a value of the previous one behind.
"""

from __future__ import annotations

from typing import Any

from ...config.load import default_value
from ...text.schema import TextConfig

PRESETS: dict[str, dict[str, Any]] = {
    "Balanced": {},
    "Small dataset (memorise facts)": {"lora_rank": 16, "lora_alpha": 32.0, "learning_rate": 3e-4, "epochs": 10,
                                       "batch_size": 2},
    "Low VRAM (QLoRA 4-bit)": {"load_in_4bit": True, "gradient_checkpointing": True, "batch_size": 1,
                               "gradient_accumulation_steps": 8, "cutoff_len": 512, "optimizer": "adamw8bit"},
    "Long context": {"cutoff_len": 4096, "batch_size": 1, "gradient_accumulation_steps": 4,
                     "gradient_checkpointing": True},
}
CHOICES = list(PRESETS)
DEFAULT_PRESET = CHOICES[0]


def preset_values(name: str) -> dict[str, Any]:
    """The form values of preset `name`: the defaults of every key a preset sets, then the preset's own."""
    values = {key: default_value(key, TextConfig) for preset in PRESETS.values() for key in preset}
    values.update(PRESETS[name])
    return values
