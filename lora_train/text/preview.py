"""The data as the model will see it, before training: the first rows with the template applied and the
learned part marked, and token-length statistics. Needs the tokenizer only, not the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from ..core.errors import UserError
from .data import build_text_data
from .encode import IGNORE, Encoded
from .model import classify_base_model, load_tokenizer
from .schema import TextConfig
from .templates import choose_template


@dataclass
class Preview:
    template: str
    rows: list[list[tuple[str, bool]]]  # each row as runs of (text, learned)
    train_rows: int
    val_rows: int
    tokens_min: int
    tokens_mean: float
    tokens_max: int
    notes: list[str] = field(default_factory=list)


def runs(tokenizer, example: Encoded) -> list[tuple[str, bool]]:
    """The row's text in runs of learned / not learned tokens."""
    flags = [label != IGNORE for label in example.labels]
    result, position = [], 0
    for learned, group in groupby(flags):
        count = len(list(group))
        result.append((tokenizer.decode(example.input_ids[position:position + count]), learned))
        position += count
    return result


def preview_data(config: TextConfig, rows: int = 3) -> Preview:
    if rows < 0:
        raise UserError(f"rows {rows}: give how many rows to show, 0 or more.")
    tokenizer = load_tokenizer(classify_base_model(config.base_model), config.trust_remote_code)
    template = choose_template(config.template, tokenizer)
    data = build_text_data(config, tokenizer)
    lengths = [len(example) for example in data.train + data.val]
    return Preview(template.name, [runs(tokenizer, example) for example in data.train[:rows]], len(data.train),
                   len(data.val), min(lengths), round(sum(lengths) / len(lengths), 1), max(lengths), data.notes)


def format_preview(preview: Preview) -> str:
    """Plain text: the learned part of each row between ⟦ and ⟧."""
    lines = [f"Template: {preview.template}. {preview.train_rows} training sequence(s), {preview.val_rows} for eval; "
             f"tokens per sequence: min {preview.tokens_min}, mean {preview.tokens_mean}, max {preview.tokens_max}. "
             "The learned part is between ⟦ and ⟧."]
    lines += [f"note: {note}" for note in preview.notes]
    for number, row in enumerate(preview.rows, start=1):
        lines += [f"--- row {number}", "".join(f"⟦{text}⟧" if learned else text for text, learned in row)]
    return "\n".join(lines)
