"""The text dataset of a run: rows read, encoded, split into train / eval, and served as padded batches.

The order of an epoch is a permutation seeded by (seed, epoch), so a resumed run skips the
batches already done and sees the same ones after.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import UserError
from .encode import IGNORE, Encoded, encode_all, pack
from .rows import FORMAT_HELP, data_files, read_rows
from .schema import TextConfig


@dataclass
class TextData:
    train: list[Encoded]
    val: list[Encoded]
    notes: list[str] = field(default_factory=list)  # what the user should know (bad rows, cut rows)
    files: list[Path] = field(default_factory=list)

    def batches_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train) // batch_size)


def build_text_data(config: TextConfig, tokenizer) -> TextData:
    files = data_files(config.metadata_path, config.train_data_dir)
    rows = read_rows(files)
    if rows.documents and config.text_overlap >= config.cutoff_len:  # text_overlap applies to .txt data only
        texts = ", ".join(str(path) for path in files if path.suffix.lower() == ".txt")
        raise UserError(f"'text_overlap' ({config.text_overlap}) must be smaller than 'cutoff_len' "
                        f"({config.cutoff_len}) for the .txt data in {texts}: lower text_overlap.")
    notes = rows.warnings + ([f"Skipped {len(rows.problems)} unusable row(s): " + "; ".join(rows.problems[:10])
                              + (" ..." if len(rows.problems) > 10 else "")] if rows.problems else [])
    examples, report = encode_all(tokenizer, rows.conversations, rows.documents, config.cutoff_len,
                                  config.text_overlap, config.train_on_inputs)
    if report.dropped:
        notes.append(f"Skipped {len(report.dropped)} row(s) after applying the template: "
                     + "; ".join(report.dropped[:10]))
    if report.truncated:
        notes.append(f"{report.truncated} of {len(rows.conversations)} row(s) were longer than cutoff_len "
                     f"({config.cutoff_len}) tokens and were cut: their end is not learned. Raise cutoff_len to "
                     "keep them whole.")
    if not examples:
        raise UserError(f"No usable training row in {', '.join(map(str, files))} once encoded. {FORMAT_HELP} "
                        + " ".join(notes))
    train, val = split(examples, config.val_size, config.seed)
    if config.packing:
        train = pack(train, config.cutoff_len)
    if config.batch_size > len(train):
        notes.append(f"batch_size {config.batch_size} is more than the {len(train)} training sequence(s): each step "
                     f"trains on all {len(train)} at once. Lower batch_size, or add rows.")
    return TextData(train, val, notes, files)


def split(examples: list[Encoded], val_size: float, seed: int) -> tuple[list[Encoded], list[Encoded]]:
    """(train, eval): val_size below 1 is a fraction, from 1 a count; the train part keeps at least one row."""
    if val_size <= 0:
        return examples, []
    count = int(val_size) if val_size >= 1 else max(1, round(val_size * len(examples)))
    if count >= len(examples):
        raise UserError(f"val_size {val_size:g} leaves no training row ({len(examples)} usable rows). Lower it.")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])


def collate(examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (padding is never learned, whatever its id)."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def epoch_batches(examples: list[Encoded], batch_size: int, seed: int, epoch: int, skip: int, pad_id: int,
                  shuffle: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """The epoch's batches in its seeded order, after skipping the first `skip` batches."""
    order = list(range(len(examples)))
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100003 + epoch)
        order = torch.randperm(len(examples), generator=generator).tolist()
    for start in range(skip * batch_size, len(order), batch_size):
        yield collate([examples[i] for i in order[start:start + batch_size]], pad_id)
