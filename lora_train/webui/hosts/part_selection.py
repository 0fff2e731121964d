"""The files a WebUI's "VAE / Text Encoder" selector (Forge, Forge Neo) names, sorted into the parts a DiT
family needs besides its transformer (Flux: `ae`, `clip_l`, `t5xxl`), each by the tensor names in its header.

Torch-free and WebUI-free: the parts, their file signatures and their places in an all-in-one checkpoint
come from the families' table (`DitParts.separate`); a part that is neither selected nor in the checkpoint,
or selected twice, gets a message naming what to choose in the selector.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ...families.interface import DitParts, Family, SeparatePart
from .model_files import checkpoint_keys, file_version, sniff_family

SELECTOR = 'Forge\'s "VAE / Text Encoder" selector'


@dataclass(frozen=True)
class PartSelection:
    """What the selector gives the checkpoint's family: config key -> file, the parts the checkpoint holds
    itself, the parts that are missing, those selected more than once, and the selected files that are none."""

    family: Family
    parts: tuple[SeparatePart, ...]  # the family's (DitParts.separate)
    checkpoint: Path
    files: dict[str, str]
    inside: tuple[str, ...]
    missing: tuple[SeparatePart, ...]
    repeated: dict[str, tuple[str, ...]]
    unread: tuple[str, ...]  # selected files whose header names no part (GGUF, .pt, another model's)

    def problem(self, given: Iterable[str] = ()) -> str | None:
        """What to do before training, None when every part is found; `given`: the keys the config names."""
        given = set(given)
        missing = [part for part in self.missing if part.key not in given]
        repeated = {key: files for key, files in self.repeated.items() if key not in given}
        if not (missing or repeated):
            return None
        lines = [f"Select the {part.title} ({part.usual_name}, in models/{part.folder}) in {SELECTOR}, or name its "
                 f"file in Advanced > {part.key}: {self.checkpoint.name} holds the {self.family.names.title} "
                 "transformer without it." for part in missing]
        lines += [f"{SELECTOR} has {len(files)} files for {key} ({', '.join(Path(f).name for f in files)}): keep "
                  "one." for key, files in repeated.items()]
        if missing and self.unread:
            lines.append(f"Not read as a part: {', '.join(Path(f).name for f in self.unread)} (lora_train reads the "
                         "parts from .safetensors files).")
        return " ".join(lines)

    @property
    def keys(self) -> tuple[str, ...]:
        """The config keys of the family's parts, in its order."""
        return tuple(part.key for part in self.parts)

    def describe(self) -> str:
        """`ae: ae.safetensors, clip_l: in the checkpoint, t5xxl: t5xxl_fp16.safetensors`."""
        found = {key: "in the checkpoint" for key in self.inside}
        found.update({key: Path(path).name for key, path in self.files.items()})
        return ", ".join(f"{key}: {found[key]}" for key in self.keys if key in found)


def _holds(path: Path, parts: tuple[SeparatePart, ...]) -> tuple[str | None, tuple[str, ...]]:
    """(the part whose own file `path` is, or None; the parts it holds under their all-in-one prefixes)."""
    version = file_version(path)
    return (None, ()) if version is None else _read_parts(path, *version, parts)


@functools.lru_cache(maxsize=256)
def _read_parts(path: Path, mtime_ns: int, size: int, parts: tuple[SeparatePart, ...]
                ) -> tuple[str | None, tuple[str, ...]]:
    keys = checkpoint_keys(path) or frozenset()
    own = next((part.key for part in parts if part.file.matches(keys)), None)
    return own, tuple(part.key for part in parts if any(key.startswith(part.inside) for key in keys))


def select_parts(checkpoint: Path, selected: Iterable[str]) -> PartSelection | None:
    """The `selected` files sorted into the parts of `checkpoint`'s family; None when the family (SD, or one
    not trained) takes no separate parts. A selected file wins over the same part inside the checkpoint, as in
    Forge's loader."""
    family = sniff_family(checkpoint)
    if not isinstance(family, Family) or not isinstance(family.parts, DitParts) or not family.parts.separate:
        return None
    parts = family.parts.separate
    chosen: dict[str, list[str]] = {}
    unread = []
    for path in dict.fromkeys(selected):
        key = _holds(Path(path), parts)[0]
        if key is None:
            unread.append(path)
        else:
            chosen.setdefault(key, []).append(path)
    inside = tuple(key for key in _holds(checkpoint, parts)[1] if key not in chosen)
    return PartSelection(family, parts, checkpoint, {key: paths[0] for key, paths in chosen.items() if len(paths) == 1},
                         inside, tuple(part for part in parts if part.key not in chosen and part.key not in inside),
                         {key: tuple(paths) for key, paths in chosen.items() if len(paths) > 1}, tuple(unread))
