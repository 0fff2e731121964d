"""A cache of encoder outputs (dicts of tensors) by key: in memory, or on disk across runs.

One mechanism serves the VAE latents and the text-encoder outputs. A key is a hash of everything
the output depends on (`cache_key`): the image's content hash and its crop settings, or the caption
text, plus the encoder's identity, so changing any of them misses the cache and re-encodes.
On disk each entry is one `<key>.safetensors` file, written atomically (temp file, fsync, rename),
so a killed run never leaves a half-written entry; entries are never rewritten in place.
The default folder is a hidden `.lora_train_cache/` inside the dataset folder (`choose_cache_dir`
falls back to a folder the caller passes when that one is not writable). `stats` counts hits and
misses so a caller (or a test) can see that a second run encoded nothing.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from lora_train.core.errors import UserError
from lora_train.core.atomic import replace_file

CACHE_DIR_NAME = ".lora_train_cache"
Tensors = dict[str, torch.Tensor]


@dataclass
class CacheStats:
    hits: int = 0  # entries found already cached
    misses: int = 0  # entries that had to be encoded


def cache_key(**parts: Any) -> str:
    """A stable hex key of JSON-able parts (settings, content hashes, encoder identity)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def choose_cache_dir(data_dir: Path, fallback: Path | None) -> tuple[Path, str | None]:
    """(folder, warning): `data_dir/.lora_train_cache`, or `fallback` (with a warning) if that is not writable."""
    preferred = data_dir / CACHE_DIR_NAME
    reason = _unwritable(preferred)
    if reason is None:
        return preferred, None
    if fallback is not None and _unwritable(fallback) is None:
        return fallback, f"Cannot write the cache into {preferred} ({reason}); using {fallback} instead."
    raise UserError(f"Cannot write the cache into {preferred} ({reason}) nor into {fallback}: make one of them "
                    f"writable, or turn the disk cache off.")


class TensorCache:
    """Dicts of tensors by key; on disk under `directory` when given, else in memory."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.stats = CacheStats()
        self._memory: dict[str, Tensors] = {}

    def __contains__(self, key: str) -> bool:
        if self.directory is None:
            return key in self._memory
        try:
            with safe_open(str(self._path(key)), framework="pt"):
                return True
        except (OSError, SafetensorError):
            return False

    def get(self, key: str) -> Tensors:
        if self.directory is None:
            return self._memory[key]
        path = self._path(key)
        try:
            return load_file(str(path))
        except FileNotFoundError:
            raise KeyError(key) from None
        except (OSError, SafetensorError) as exc:
            raise UserError(f"Cache file {path} cannot be read ({exc}): delete it and start again.") from None

    def put(self, key: str, tensors: Tensors) -> None:
        stored = {name: value.detach().to("cpu").contiguous().clone() for name, value in tensors.items()}
        if self.directory is None:
            self._memory[key] = stored
            return
        try:
            replace_file(self._path(key), save(stored))
        except OSError as exc:
            raise UserError(f"Cannot write to the cache folder {self.directory} ({exc.strerror or exc}): free some "
                            f"disk space, or turn the disk cache off.") from None

    def fill(self, keys: Sequence[str], items: Sequence[Any], encode: Callable[[list[Any]], Tensors],
             batch_size: int) -> None:
        """Encode the items whose key is not cached yet, `batch_size` at a time.

        `encode` takes a list of items and returns a dict of tensors whose first dimension is the
        batch; row i is stored under the key of item i. Repeated keys are encoded once.
        """
        unique = dict(zip(keys, items))
        pending = [(key, item) for key, item in unique.items() if key not in self]
        self.stats.hits += len(unique) - len(pending)
        self.stats.misses += len(pending)
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            with torch.no_grad():
                outputs = encode([item for _, item in chunk])
            for row, (key, _) in enumerate(chunk):
                self.put(key, {name: value[row] for name, value in outputs.items()})

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.safetensors"


def _unwritable(folder: Path) -> str | None:
    """None when files can be created in `folder` (made if missing), else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
