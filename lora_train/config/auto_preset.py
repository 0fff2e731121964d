"""The `auto` preset: settings proposed from the dataset, the model family and the GPU's free memory.

Each proposal is a config key, a value and one line of reasoning; every rule and the numbers in it come from
a published reference, listed with its source in docs/plan.md. A key the user set is never proposed over:
`propose` takes the user's keys and reasons on with their values (their batch size sets the step count).
Torch-free: the caller measures the free memory (None: no CUDA GPU).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..data.plan import PlannedDataset
from ..data.scan import REPEATS_FOLDER
from ..families.interface import Family

GIB = 1024 ** 3
TARGET_VIEWS = 1500  # image views in a whole run (images x repeats x epochs): 1,200-1,500 (docs/plan.md, steps)
# Epochs by dataset size (images below the bound: the lowest and highest epochs), docs/plan.md, steps.
EPOCH_RANGES = ((500, 10, 20), (3000, 5, 15), (None, 3, 10))
# The free GPU memory below which a family needs the memory options, and below which it needs the least
# memory it trains in (docs/plan.md, memory): SD 1.x/2.x LoRA in 11 GB; SDXL 10 GB recommended, 8 GB possible.
MEMORY_GIB = {"sd1": (11.0, 11.0), "sd2": (11.0, 11.0), "sdxl": (24.0, 10.0)}
# Every key a rule may propose: the tab's Auto preset resets these before it fills in the proposals.
PROPOSED_KEYS = ("resolution", "enable_bucket", "min_bucket_reso", "max_bucket_reso", "lora_rank", "lora_alpha",
                 "batch_size", "gradient_accumulation_steps", "gradient_checkpointing", "optimizer", "cache_latents",
                 "learning_rate", "train_text_encoder", "text_encoder_lr", "cache_text_encoder_outputs", "repeats",
                 "epochs")


def has_rules(family: Family) -> bool:
    """Whether the rules cover `family` (the sources give figures for Stable Diffusion 1.x / 2.x / XL only)."""
    return family.id in MEMORY_GIB


@dataclass(frozen=True)
class Proposal:
    key: str
    value: Any
    reason: str


@dataclass(frozen=True)
class DatasetFacts:
    """What the rules read from a planned dataset."""

    images: int
    adjustable: int  # images whose repeats come from the `repeats` key (not from an N_name folder)
    fixed_views: int  # views per epoch of the images in N_name folders
    median_short_side: int

    @classmethod
    def of(cls, planned: PlannedDataset, root_name: str) -> "DatasetFacts":
        records = planned.index.records
        fixed = [r for r in records if r.folder != root_name and REPEATS_FOLDER.match(r.folder)]
        return cls(len(records), len(records) - len(fixed), sum(r.repeats for r in fixed),
                   int(statistics.median(min(r.size) for r in records)))


def propose(facts: DatasetFacts, family: Family, free_memory: int | None, user: Mapping[str, Any]) -> list[Proposal]:
    """The proposals for the keys the user did not set, in the order the rules decide them; later rules reason
    with the user's values where set."""
    found: list[Proposal] = []
    values: dict[str, Any] = dict(user)

    def offer(key: str, value: Any, reason: str) -> None:
        assert key in PROPOSED_KEYS, f"{key} is proposed: add it to PROPOSED_KEYS"
        values[key] = user.get(key, value)
        if key not in user:
            found.append(Proposal(key, value, reason))

    resolution = family.default_resolution
    offer("resolution", resolution, f"{family.names.title} trains at {resolution} px (the family's default)")
    offer("enable_bucket", True, "aspect-ratio buckets keep each image's shape instead of a square crop")
    offer("min_bucket_reso", values["resolution"] // 2, f"kohya's 256 px at 512, scaled: half of {values['resolution']} px")
    offer("max_bucket_reso", values["resolution"] * 2,
          f"kohya's 1024 px at 512, scaled: twice {values['resolution']} px, so wide and tall buckets exist")
    _memory(facts, family, free_memory, offer, values)
    _learning(family, offer, values)
    _steps(facts, offer, values)
    return found


def _memory(facts: DatasetFacts, family: Family, free_memory: int | None, offer, values: dict) -> None:
    title = family.names.title
    limits = MEMORY_GIB.get(family.id)
    if free_memory is None:
        where, tight, least = "no CUDA GPU (CPU)", False, False
    elif limits is None:
        where, tight, least = f"{free_memory / GIB:.1f} GB free", False, False
    else:
        where = f"{free_memory / GIB:.1f} GB free"
        tight, least = free_memory < limits[0] * GIB, free_memory < limits[1] * GIB
    rank = 8 if least and family.id == "sdxl" else (32 if family.id == "sdxl" else 16)
    rank_reason = (f"{where}: kohya's SDXL tips use dim 4-8 on an 8 GB GPU" if rank == 8 else
                   f"kohya's {'SDXL ' if family.id == 'sdxl' else ''}example uses network_dim {rank}")
    offer("lora_rank", rank, rank_reason)
    offer("lora_alpha", values["lora_rank"] / 2, "kohya recommends alpha about half the rank")
    images = facts.images
    if least:
        short = f"{where}, under {limits[1]:g} GB for {title}"
        offer("batch_size", 1, f"{short}: batch 1")
        offer("gradient_accumulation_steps", 2, f"{short}: kohya's way to a larger batch when memory is short")
    else:
        batch = min(2, images)
        offer("batch_size", batch, f"{where}: batch 2 is the usual choice" if batch == 2 else
              "one image: batch 1")
    checkpointing = family.id == "sdxl" or tight
    offer("gradient_checkpointing", checkpointing,
          "kohya recommends it for SDXL (much less memory, a little slower)" if family.id == "sdxl" else
          f"{where}: under {limits[0]:g} GB, much less memory for a little speed" if checkpointing else
          f"{where}: not needed, so full speed")
    offer("optimizer", "adamw8bit", "kohya: AdamW8bit is memory-efficient and widely used (plain AdamW where "
                                    "bitsandbytes cannot run)")
    augmented = values.get("flip_aug", False) or values.get("crop") == "random"
    offer("cache_latents", not augmented,
          "flip_aug / random crop need the images each step, so no latent cache" if augmented else
          "kohya: encoding each image once saves memory and time")


def _learning(family: Family, offer, values: dict) -> None:
    offer("learning_rate", 1e-4, "kohya's LoRA examples use learning_rate 1e-4")
    two = len(family.parts.text_encoders) > 1
    offer("train_text_encoder", not two,
          "kohya highly recommends training only the UNet of SDXL (two text encoders)" if two else
          "kohya trains the text encoder's LoRA too by default")
    if values["train_text_encoder"]:
        offer("text_encoder_lr", 1e-5, "kohya's examples use 1e-5 (smaller than the UNet's is recommended)")
    else:
        offer("cache_text_encoder_outputs", True, "the text encoder is frozen: kohya caches its outputs to save "
                                                  "memory and time")


def _steps(facts: DatasetFacts, offer, values: dict) -> None:
    low, high = next((lo, hi) for bound, lo, hi in EPOCH_RANGES if bound is None or facts.images < bound)
    if facts.adjustable:
        repeats = max(1, round((TARGET_VIEWS - facts.fixed_views * low) / (facts.adjustable * low)))
        offer("repeats", repeats, f"{facts.adjustable} images: {repeats} repeats puts about {TARGET_VIEWS:,} views "
                                  f"in {low} epochs")
    views = facts.fixed_views + facts.adjustable * values.get("repeats", 1)
    epochs = min(high, max(low, round(TARGET_VIEWS / views)))
    accumulation = values.get("gradient_accumulation_steps", 1)
    batch = values["batch_size"] * accumulation
    steps = -(-(-(-views // values["batch_size"])) // accumulation) * epochs  # kohya: ceil(ceil(views/batch)/acc)
    offer("epochs", epochs, f"{views:,} views per epoch x {epochs} epochs = {views * epochs:,} views: about "
                            f"{max(1, steps):,} steps at batch {batch} ({low}-{high} epochs for {facts.images:,} images)")
