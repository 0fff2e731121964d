"""Named starting points (the tab's preset buttons, `--preset` on the CLI, and OOM advice).

Each preset is a partial config: only the keys it sets. Values follow the guidance users
know from kohya and lora-scripts (rank 4-32, alpha = rank or rank/2, UNet lr 1e-4,
text-encoder lr 1e-5..5e-5, 5-20 epochs).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "character": {"lora_rank": 16, "lora_alpha": 8, "learning_rate": 1e-4, "text_encoder_lr": 5e-5,
                  "epochs": 10, "train_text_encoder": True, "shuffle_caption": True, "keep_tokens": 1},
    "style": {"lora_rank": 32, "lora_alpha": 16, "learning_rate": 1e-4, "text_encoder_lr": 2e-5, "epochs": 15,
              "train_text_encoder": True, "shuffle_caption": True, "keep_tokens": 1, "flip_aug": True},
    "concept": {"lora_rank": 8, "lora_alpha": 4, "learning_rate": 2e-4, "text_encoder_lr": 5e-5, "epochs": 8,
                "train_text_encoder": True},
    # The least memory that still trains well: SDXL at 1024 px in about 10-12 GB of VRAM.
    "low_vram": {"batch_size": 1, "gradient_accumulation_steps": 2, "gradient_checkpointing": True,
                 "mixed_precision": "auto", "optimizer": "adamw8bit", "cache_latents": True,
                 "train_text_encoder": False, "cache_text_encoder_outputs": True, "lora_rank": 16,
                 "lora_alpha": 8},
}


def preset_values(name: str) -> dict[str, Any]:
    from ..core.errors import UserError

    if name not in PRESETS:
        raise UserError(f"Unknown preset '{name}': choose one of {', '.join(PRESETS)}.")
    return dict(PRESETS[name])
