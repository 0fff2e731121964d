"""How many CLIP tokens a caption takes, without the tokenizer: a floor that never counts too many.

CLIP's tokenizer first splits the lower-cased text into words (runs of letters), single digits, and runs of
other non-space characters (its pre-tokenizer pattern, `bpe_simple_vocab` in openai/CLIP's `simple_tokenizer.py`),
then byte-pair-encodes each piece into one or more tokens. Counting the pieces gives the least number of tokens
the caption can take, exact for the common words that are one token each. The exact count needs the tokenizer
(transformers), which the WebUI's process does not load: `caption DIR --check-length` asks the worker for it.
"""

from __future__ import annotations

import re
from typing import Sequence

CLIP_TOKEN_LIMIT = 75  # CLIP reads 77 positions: the start and end marks and 75 tokens of text
_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\w\s]|_)+", re.IGNORECASE)


def token_floor(caption: str) -> int:
    """The least number of CLIP tokens `caption` encodes to (start and end marks not counted)."""
    return len(_PIECES.findall(caption.lower()))


def token_floors(captions: Sequence[str]) -> list[int]:
    """`token_floor` of each caption: the default counter of `data.doctor`."""
    return [token_floor(caption) for caption in captions]
