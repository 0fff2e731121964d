"""CLIP's BPE tokenizer built offline from the vocabulary that open_clip_torch ships.

CLIP (and so every SD1/SD2/SDXL text encoder) uses one BPE vocabulary: the first 48,894
merges of `bpe_simple_vocab_16e6.txt.gz`, 256 byte symbols, the same with `</w>`, the merged
tokens, then `<|startoftext|>` and `<|endoftext|>`: 49,408 ids. Writing that out as
`vocab.json` + `merges.txt` gives a `CLIPTokenizer` identical to openai/clip-vit-large-patch14's,
with no hub. Fewer merges give a smaller vocabulary of the same kind (the tests' fixtures use that).

A model folder's own tokenizer always wins: transformers saves it as `tokenizer.json` (current
versions), `vocab.json` + `merges.txt` (older ones) or both, and a fine-tune may have its own
vocabulary. `fit_tokenizer` refuses a tokenizer whose ids do not fit its text encoder, and gives one
saved without `model_max_length` (transformers then reads 10**30) the text encoder's position count.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Literal

import torch

from transformers import CLIPTokenizer

from ..core.errors import UserError

CLIP_VOCAB_SIZE = 49408
_SPECIAL_IDS = 512 + 2  # byte symbols (with and without </w>), <|startoftext|>, <|endoftext|>
TokenizerFiles = Literal["both", "json", "vocab"]  # what is written: both formats, tokenizer.json, vocab+merges


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def bundled_bpe_path() -> Path:
    """The BPE merges file inside the installed open_clip package (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("The CLIP vocabulary comes from the open_clip_torch package, which is not installed. "
                        "Run `make install` (or `pip install --no-deps open_clip_torch`).")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise UserError(f"open_clip_torch is installed but {path} is missing; reinstall open_clip_torch.")
    return path


def write_clip_tokenizer_files(folder: str | Path, model_max_length: int = 77, pad_token: str = "<|endoftext|>",
                               vocab_size: int = CLIP_VOCAB_SIZE, files: TokenizerFiles = "both") -> Path:
    """Write CLIP's tokenizer (its first `vocab_size` ids) into `folder`: tokenizer.json as current transformers
    saves it, vocab.json + merges.txt as older versions read it, or both; with the tokenizer configs."""
    if not _SPECIAL_IDS < vocab_size <= CLIP_VOCAB_SIZE:
        raise ValueError(f"a CLIP vocabulary has {_SPECIAL_IDS + 1} to {CLIP_VOCAB_SIZE} ids, not {vocab_size}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bundled_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:vocab_size - _SPECIAL_IDS + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=model_max_length, pad_token=pad_token)
    if files == "json":
        (folder / "vocab.json").unlink()
        (folder / "merges.txt").unlink()
    tokenizer.save_pretrained(str(folder))
    if files == "vocab":
        (folder / "tokenizer.json").unlink()
    return folder


def has_tokenizer(folder: str | Path | None) -> bool:
    """Whether `folder` holds a tokenizer in a format transformers saves."""
    return folder is not None and ((Path(folder) / "tokenizer.json").is_file() or
                                   all((Path(folder) / name).is_file() for name in ("vocab.json", "merges.txt")))


def load_clip_tokenizer(folder: str | Path | None = None, pad_token: str = "<|endoftext|>",
                        vocab_size: int = CLIP_VOCAB_SIZE) -> CLIPTokenizer:
    """The tokenizer of a folder that has one (`has_tokenizer`), else CLIP's built from the bundled vocabulary."""
    if has_tokenizer(folder):
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer_files(tmp, pad_token=pad_token, vocab_size=vocab_size)
        return CLIPTokenizer.from_pretrained(tmp, local_files_only=True)


def fit_tokenizer(tokenizer: CLIPTokenizer, text_encoder: torch.nn.Module, folder: Path | None, what: str) -> None:
    """A UserError unless every id of `tokenizer` (read from `folder`, None: the bundled CLIP vocabulary) has a
    row in `text_encoder`'s embedding table (else the first step fails with an IndexError). A token window
    longer than the encoder's positions (none saved: 10**30) becomes the position count."""
    positions = getattr(text_encoder.config, "max_position_embeddings", None)
    if positions and tokenizer.model_max_length > positions:
        tokenizer.model_max_length = positions
    ids = max(tokenizer.get_vocab().values()) + 1
    rows = text_encoder.get_input_embeddings().num_embeddings
    if ids <= rows:
        return
    if has_tokenizer(folder):
        source = f"The tokenizer in {folder}"
    else:
        source = (f"{folder} has no tokenizer (tokenizer.json or vocab.json + merges.txt), and CLIP's" if folder
                  else "CLIP's bundled tokenizer")
    raise UserError(f"{source} has {ids} token ids, but {what} has only {rows} rows in its embedding table, so they "
                    "do not belong together. Put the tokenizer this text encoder was trained with in "
                    f"{folder or 'its folder'} (as transformers' save_pretrained writes it).")
