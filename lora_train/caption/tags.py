"""Booru tags from a WD tagger's probabilities: the tag list, thresholds or MCut, and the caption text.

`selected_tags.csv` (tag_id,name,category,count) lists the model's outputs in order; category 9
is a rating, 0 a general tag, 4 a character. A general or character tag is kept when its
probability reaches its threshold (0.35 / 0.85 by default, the taggers' own), or, with MCut, the
threshold at the largest gap between sorted probabilities (character MCut never below 0.15, as
in SmilingWolf's app). Only the most likely rating is written, and only when asked. The caption is:
tags always first (the trigger word), then the rating, characters, general tags, each by falling
probability; excluded tags dropped, replacements applied, underscores turned into spaces except in
kaomoji such as `^_^`, no tag twice.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lora_train.core.errors import UserError
from lora_train.data.captions import decode_text

RATING, GENERAL, CHARACTER = 9, 0, 4
# SmilingWolf's list: tags whose underscores are part of the face.
KAOMOJI = frozenset({"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
                     ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"})
CHARACTER_MCUT_FLOOR = 0.15


@dataclass(frozen=True)
class TagList:
    """The model's outputs: every name, and the output indices of each category."""

    names: list[str]
    rating: np.ndarray
    general: np.ndarray
    character: np.ndarray


@dataclass(frozen=True)
class TagOptions:
    """How probabilities become a caption."""

    general_threshold: float = 0.35
    character_threshold: float = 0.85
    general_mcut: bool = False
    character_mcut: bool = False
    include_rating: bool = False
    exclude: tuple[str, ...] = ()
    always_first: tuple[str, ...] = ()
    replace: dict[str, str] = field(default_factory=dict)
    underscores_to_spaces: bool = True


def read_selected_tags(path: Path) -> TagList:
    """The tag list of a WD tagger; a UserError when the file is not one."""
    try:
        text, _ = decode_text(path.read_bytes())
    except OSError as exc:
        raise UserError(f"Cannot read the tagger's tag list {path} ({exc.strerror or exc}).") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"name", "category"} <= set(rows[0]):
        raise UserError(f"{path} is not a WD tagger tag list: it needs the columns tag_id,name,category,count "
                        "(the selected_tags.csv that comes with the model).")
    try:
        categories = np.array([int(row["category"]) for row in rows])
    except (TypeError, ValueError):
        raise UserError(f"{path}: the category column must hold numbers (9 rating, 0 general, 4 character).") from None
    return TagList([row["name"] for row in rows], *(np.flatnonzero(categories == c) for c in (RATING, GENERAL, CHARACTER)))


def mcut_threshold(probabilities: np.ndarray) -> float:
    """Maximum Cut Thresholding: the midpoint of the largest gap between sorted probabilities."""
    ordered = np.sort(probabilities)[::-1]
    if len(ordered) < 2:
        return float(ordered[0]) if len(ordered) else 1.0
    gap = int(np.argmax(ordered[:-1] - ordered[1:]))
    return float((ordered[gap] + ordered[gap + 1]) / 2)


def format_tag(name: str, underscores_to_spaces: bool = True) -> str:
    """The tag as written in a caption: underscores as spaces except in kaomoji."""
    return name.replace("_", " ") if underscores_to_spaces and name not in KAOMOJI else name


def select(probabilities: np.ndarray, tags: TagList, options: TagOptions) -> list[str]:
    """The caption's tags (formatted, in order) for one image's output row."""
    chosen: list[str] = []
    if options.include_rating and len(tags.rating):
        chosen.append(tags.names[tags.rating[int(np.argmax(probabilities[tags.rating]))]])
    character = _threshold(probabilities[tags.character], options.character_threshold, options.character_mcut,
                           floor=CHARACTER_MCUT_FLOOR)
    general = _threshold(probabilities[tags.general], options.general_threshold, options.general_mcut)
    chosen += _above(probabilities, tags, tags.character, character)
    chosen += _above(probabilities, tags, tags.general, general)
    return arrange([format_tag(name, options.underscores_to_spaces) for name in chosen], options)


def arrange(tags: list[str], options: TagOptions) -> list[str]:
    """Replacements, exclusions and the always-first tags applied; each tag once."""
    excluded = {_key(tag) for tag in options.exclude}
    replace = {_key(old): new for old, new in options.replace.items()}
    result: list[str] = []
    seen: set[str] = set()
    for tag in [*options.always_first, *(replace.get(_key(t), t) for t in tags)]:
        tag = tag.strip()
        if tag and _key(tag) not in seen and (_key(tag) not in excluded or tag in options.always_first):
            seen.add(_key(tag))
            result.append(tag)
    return result


def parse_replacements(pairs: list[str]) -> dict[str, str]:
    """`old=new` pairs (from the command line or a settings box) as a dict."""
    result = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip():
            raise UserError(f"Tag replacement {pair!r} must look like old=new (e.g. 1girl=woman).")
        result[old.strip()] = new.strip()
    return result


def _threshold(values: np.ndarray, fixed: float, use_mcut: bool, floor: float = 0.0) -> float:
    return max(floor, mcut_threshold(values)) if use_mcut and len(values) else fixed


def _above(probabilities: np.ndarray, tags: TagList, indices: np.ndarray, threshold: float) -> list[str]:
    kept = [int(i) for i in indices if probabilities[i] >= threshold]
    return [tags.names[i] for i in sorted(kept, key=lambda i: -probabilities[i])]


def _key(tag: str) -> str:
    """Tags compare without case and with `_` and space alike (`long_hair` is `long hair`)."""
    tag = tag.strip().lower()
    return tag if tag in KAOMOJI else tag.replace("_", " ")
