"""The dataset doctor: what in a dataset will train badly, found before the first step, each finding naming the
files and saying what to do.

It reads a planned dataset (`data.plan`: the scan and its buckets), so the trainer, `lora_train plan` and the
tab's dataset check see the same images. Checks: duplicate and near-duplicate images (a perceptual hash,
`image_hash`), captions without the trigger word or with it in the middle, images far below the training
size, extreme aspect ratios alone in their bucket, captions longer than the text encoder reads, tags in every
caption, and the balance of image views between `N_name` folders. Torch-free (PIL and numpy).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from lora_train.data.caption_tokens import CLIP_TOKEN_LIMIT, token_floors
from lora_train.data.captions import count_tags, with_trigger
from lora_train.data.image_hash import fingerprint, similar_groups
from lora_train.data.messages import name_files
from lora_train.data.plan import DataSettings, PlannedDataset

FAR_BELOW = 2.0  # an image enlarged more than this many times on a side is far below the training size
EXTREME_ASPECT = 2.0  # 2:1 or wider (or taller)
UNBALANCED = 2.0  # one folder seen at least this many times as often per image as another
TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass(frozen=True)
class Finding:
    """One problem: which check found it, the files it concerns, and the message (what is wrong, what to do)."""

    check: str  # duplicates | trigger | small | aspect | long_caption | common_tags | repeat_balance
    files: tuple[str, ...]
    message: str


def examine_dataset(planned: PlannedDataset, settings: DataSettings, count_tokens: TokenCounter | None = None,
                    token_limit: int = CLIP_TOKEN_LIMIT) -> list[Finding]:
    """Every finding on the dataset. `count_tokens` counts the CLIP tokens of captions (the tokenizer where one is
    loaded); without it a floor is counted (`caption_tokens`), so a caption reported is surely too long."""
    return [*_duplicates(planned), *_trigger(planned, settings.trigger_word), *_small(planned),
            *_aspect(planned, settings), *_long_captions(planned, settings.trigger_word, count_tokens, token_limit),
            *_common_tags(planned, settings.trigger_word), *_repeat_balance(planned)]


def _duplicates(planned: PlannedDataset) -> list[Finding]:
    records = planned.index.records
    prints = [fingerprint(record.path, record.orientation) for record in records]
    findings = []
    for group in similar_groups(prints):
        names = tuple(records[i].name for i in group)
        findings.append(Finding("duplicates", names, f"{name_files(names)}: the same picture or near-duplicates "
                                f"(re-saved, resized or slightly edited), so it is trained {len(names)} times as "
                                f"often as the others: keep one of them."))
    return findings


def _trigger(planned: PlannedDataset, trigger_word: str) -> list[Finding]:
    trigger = trigger_word.strip()
    if not trigger:
        return []
    named = re.compile(rf"(?<!\w){re.escape(trigger)}(?!\w)", re.IGNORECASE)
    missing, inside = [], []
    for record in planned.index.records:
        if record.caption and with_trigger(record.caption, trigger) != record.caption:  # not in front
            (inside if named.search(record.caption) else missing).append(record.name)
    findings = []
    if missing:
        findings.append(Finding("trigger", tuple(missing), f"{name_files(missing)}: the caption does not name the "
                                f"trigger word '{trigger}'. It is put in front when training, so these images teach it "
                                f"too: if they are not of the concept, move them out of the dataset."))
    if inside:
        findings.append(Finding("trigger", tuple(inside), f"{name_files(inside)}: the caption has the trigger word "
                                f"'{trigger}' inside, not in front, so it is trained with it twice (it is put in front "
                                f"too): move it to the front of the caption, or delete it there."))
    return findings


def _small(planned: PlannedDataset) -> list[Finding]:
    small = [(record, assignment.resized[0] / record.size[0])
             for record, assignment in zip(planned.index.records, planned.plan.assignments)
             if assignment.resized[0] > FAR_BELOW * record.size[0]]
    if not small:
        return []
    shown = [f"{record.name} ({record.size[0]}x{record.size[1]}, enlarged {scale:.1f}x)" for record, scale in small]
    return [Finding("small", tuple(record.name for record, _ in small),
                    f"{name_files(shown)}: far below the training size, so they train blurred and teach the LoRA "
                    f"blur: use larger originals, or remove them (bucket_no_upscale trains them at their own size).")]


def _aspect(planned: PlannedDataset, settings: DataSettings) -> list[Finding]:
    if not settings.buckets.enable_bucket:
        return []
    per_bucket = Counter(planned.plan.bucket_ids)
    alone = [record for record, bucket in zip(planned.index.records, planned.plan.bucket_ids)
             if per_bucket[bucket] == 1 and max(record.size) / min(record.size) >= EXTREME_ASPECT]
    if not alone:
        return []
    shown = [f"{r.name} ({r.size[0]}x{r.size[1]})" for r in alone]
    return [Finding("aspect", tuple(r.name for r in alone), f"{name_files(shown)}: an extreme aspect ratio that no "
                    f"other image shares, so each is alone in its bucket and trains in batches of one: crop them "
                    f"to a more common shape (such as 2:3 or 3:2), or add more images of that shape.")]


def _long_captions(planned: PlannedDataset, trigger_word: str, count_tokens: TokenCounter | None,
                   limit: int) -> list[Finding]:
    records = [record for record in planned.index.records if record.caption]
    if not records:
        return []
    counts = (count_tokens or token_floors)([with_trigger(r.caption, trigger_word) for r in records])
    long = [(record, count) for record, count in zip(records, counts) if count > limit]
    if not long:
        return []
    about = "" if count_tokens else "at least "
    shown = [f"{record.name} ({about}{count} tokens)" for record, count in long]
    return [Finding("long_caption", tuple(record.name for record, _ in long),
                    f"{name_files(shown)}: longer than the {limit} tokens the text encoder reads (with the trigger "
                    f"word), so the end of the caption is cut off: shorten it, most important words first.")]


def _common_tags(planned: PlannedDataset, trigger_word: str) -> list[Finding]:
    captions = [record.caption for record in planned.index.records]
    if len(captions) < 3 or not all(captions):
        return []
    trigger = trigger_word.strip().lower()
    shared = [tag for tag, count in count_tags(captions).items() if count >= len(captions) and tag != trigger]
    if not shared:
        return []
    tags = ", ".join(f"'{tag}'" for tag in shared)
    return [Finding("common_tags", (), f"Every caption has {tags}: the LoRA cannot tell them from the trigger word, "
                    f"so they are absorbed into it. Delete them from the captions if they are part of the concept "
                    f"(the trigger word then brings them); keep them only where they vary.")]


def _repeat_balance(planned: PlannedDataset) -> list[Finding]:
    folders = planned.index.dataset_dirs
    if len(folders) < 2:
        return []
    views = {name: entry["img_count"] * entry["n_repeats"] for name, entry in folders.items()}
    most, least = max(views, key=views.get), min(views, key=views.get)
    if views[most] < UNBALANCED * views[least]:
        return []
    target = views[most]
    parts = [f"{name}: {entry['img_count']} images x {entry['n_repeats']} repeats = {views[name]} views"
             for name, entry in folders.items()]
    advice = [f"{name} {max(1, round(target / entry['img_count']))}" for name, entry in folders.items()]
    return [Finding("repeat_balance", tuple(folders), f"The folders are seen unevenly per epoch ({'; '.join(parts)}), "
                    f"so the LoRA learns mostly {most}: if they matter alike, set the repeats (the N of N_name) to "
                    f"about {', '.join(advice)}.")]
