"""CLIP's BPE tokenizer built offline from the vocabulary that open_clip_torch ships.

CLIP (and so every SD1/SD2/SDXL text encoder) uses one BPE vocabulary: the first 48,894
merges of `bpe_simple_vocab_16e6.txt.gz`, 256 byte symbols, the same with `</w>`, the merged
tokens, then `<|startoftext|>` and `<|endoftext|>`: 49,408 ids. Writing that out as
`vocab.json` + `merges.txt` gives a `CLIPTokenizer` identical to openai/clip-vit-large-patch14's,
with no hub.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from transformers import CLIPTokenizer

from ..core.errors import UserError

CLIP_VOCAB_SIZE = 49408
_MERGE_COUNT = 49152 - 256 - 2


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


def write_clip_tokenizer_files(folder: str | Path, model_max_length: int = 77,
                               pad_token: str = "<|endoftext|>") -> Path:
    """Write vocab.json, merges.txt and the tokenizer configs of CLIP's tokenizer into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bundled_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:_MERGE_COUNT + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=model_max_length, pad_token=pad_token)
    tokenizer.save_pretrained(str(folder))
    return folder


def load_clip_tokenizer(folder: str | Path | None = None, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """A CLIP tokenizer from a folder that has one, else built from the bundled vocabulary."""
    if folder is not None and (Path(folder) / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer_files(tmp, pad_token=pad_token)
        return CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
