"""Captions: reading caption text files, the trigger word, shuffling, dropout, tag counts.

Text files are read as UTF-8 (a UTF-8 or UTF-16 byte-order mark is honoured and dropped); a file
that is not valid UTF-8 is read as Windows-1252, or Latin-1 when even that fails, with a warning.
At training time `process_caption` puts the trigger word in front (unless the caption already
starts with it), shuffles the comma-separated tags behind the first `keep_tokens` ones (the
trigger word counts as one) and drops the whole caption with `dropout_rate`; all randomness comes
from the `random.Random` passed in, so runs are reproducible.
"""

from __future__ import annotations

import codecs
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class CaptionOptions:
    """How a stored caption becomes the text trained on."""

    trigger_word: str = ""
    shuffle: bool = False
    keep_tokens: int = 0
    dropout_rate: float = 0.0


def decode_text(data: bytes) -> tuple[str, str | None]:
    """(text, warning): the warning names the fallback encoding used when the bytes are not UTF-8."""
    for encoding in ("utf-16", "utf-8-sig") if data.startswith(_UTF16_BOMS) else ("utf-8-sig",):
        try:
            return data.decode(encoding), None
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("cp1252"), _fallback_warning("Windows-1252")
    except UnicodeDecodeError:
        return data.decode("latin-1"), _fallback_warning("Latin-1")


def read_caption_file(path: Path) -> tuple[str, str | None]:
    """(caption, warning) of a caption file: its first non-empty line, stripped."""
    text, warning = decode_text(path.read_bytes())
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first, warning


def with_trigger(caption: str, trigger_word: str) -> str:
    """The caption with the trigger word in front, unless it already starts with it."""
    trigger = trigger_word.strip()
    if not trigger or _starts_with(caption, trigger):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def process_caption(caption: str, options: CaptionOptions, rng: random.Random) -> str:
    """The text trained on this time: dropout, trigger word, then tag shuffling."""
    if options.dropout_rate > 0 and rng.random() < options.dropout_rate:
        return ""
    text = with_trigger(caption, options.trigger_word)
    if not options.shuffle:
        return text
    units = _units(text, options.trigger_word.strip())
    fixed, flexible = units[: options.keep_tokens], units[options.keep_tokens :]
    rng.shuffle(flexible)
    return ", ".join(fixed + flexible)


def count_tags(captions: Iterable[str]) -> dict[str, int]:
    """Tag -> count over captions, as kohya's `ss_tag_frequency` counts them (split on commas, lower case)."""
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(tag.strip().lower() for tag in caption.split(",") if tag.strip())
    return dict(counts)


def _fallback_warning(encoding: str) -> str:
    return f"not UTF-8, read as {encoding}: re-save it as UTF-8 if some characters look wrong"


def _tags(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]


def _starts_with(caption: str, trigger: str) -> bool:
    """The caption begins with the trigger word as a whole word (case-insensitive)."""
    rest = caption[len(trigger) :]
    return caption[: len(trigger)].lower() == trigger.lower() and (not rest or rest[0] == "," or rest[0].isspace())


def _units(text: str, trigger: str) -> list[str]:
    """Comma-separated tags, with a leading trigger word kept whole even if it contains commas."""
    rest = text[len(trigger) :]
    if trigger and _starts_with(text, trigger) and (not rest.strip() or rest.lstrip().startswith(",")):
        return [text[: len(trigger)]] + _tags(rest)
    return _tags(text)
