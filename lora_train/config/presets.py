"""Named starting points (the tab's preset list, and OOM advice), each offered for the families that list it
(`Family.presets`).

Each preset is a partial config: only the keys it sets. The Stable Diffusion ones follow the guidance users
know from kohya and lora-scripts (rank 4-32, alpha = rank or rank/2, UNet lr 1e-4, text-encoder lr
1e-5..5e-5, 5-20 epochs). The Flux ones are memory presets sized to a GPU, chosen as kohya's sd-scripts
guide does (docs/flux.md#presets gives the source of each value).
"""

from __future__ import annotations

from typing import Any

# kohya's Flux LoRA settings for 24 GB: fp8 base, 8-bit AdamW, checkpointing, latents and T5 / CLIP-L outputs
# cached to disk, the transformer only (sd-scripts README before 884fc8c, "FLUX.1 LoRA training")
_FLUX_24GB = {"batch_size": 2, "blocks_to_swap": 0, "fp8_base": True, "optimizer": "adamw8bit",
              "gradient_checkpointing": True, "cache_latents": True, "cache_latents_to_disk": True,
              "cache_text_encoder_outputs": True, "cache_text_encoder_outputs_to_disk": True,
              "train_text_encoder": False}

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
    "flux_24gb": _FLUX_24GB,
    "flux_16gb": {**_FLUX_24GB, "batch_size": 1, "blocks_to_swap": 8},
    "flux_12gb": {**_FLUX_24GB, "batch_size": 1, "blocks_to_swap": 16},
    # Adafactor, which kohya's guide gives for less memory than 8-bit AdamW, with the schedule and the clipping
    # (off) it gives with it
    "flux_8gb": {**_FLUX_24GB, "batch_size": 1, "blocks_to_swap": 28, "optimizer": "adafactor",
                 "scheduler": "constant_with_warmup", "max_grad_norm": 0.0},
}


def preset_values(name: str, family=None) -> dict[str, Any]:
    """The keys preset `name` sets; with `family` (a `Family`), refused unless the family offers it."""
    from ..core.errors import UserError

    if name not in PRESETS:
        raise UserError(f"Unknown preset '{name}': choose one of {', '.join(PRESETS)}.")
    if family is not None and name not in family.presets:
        raise UserError(f"The {name} preset is not for {family.names.title} models: choose one of "
                        f"{', '.join(family.presets)}.")
    return dict(PRESETS[name])
