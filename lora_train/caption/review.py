"""Captions too long for the text encoder: CLIP reads 75 tokens (77 with the start and end marks).

Counted with CLIP's own BPE tokenizer (`models.clip_tokenizer`, the vocabulary every SD text
encoder uses), so this runs in the worker; `caption DIR --check-length` prints the result as one
JSON line for the WebUI tab.
"""

from __future__ import annotations

from pathlib import Path

from lora_train.caption.edit import read_captions

TOKEN_LIMIT = 75


def long_captions(folder: Path, extension: str = ".txt", limit: int = TOKEN_LIMIT) -> list[dict]:
    """[{name, tokens}] of the captions over `limit` tokens, longest first."""
    from lora_train.models.clip_tokenizer import load_clip_tokenizer

    items = [item for item in read_captions(folder, extension) if item.caption]
    if not items:
        return []
    tokenizer = load_clip_tokenizer()
    counts = [len(ids) - 2 for ids in tokenizer([item.caption for item in items])["input_ids"]]
    found = [{"name": item.name, "tokens": count} for item, count in zip(items, counts) if count > limit]
    return sorted(found, key=lambda entry: -entry["tokens"])
