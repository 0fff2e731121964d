"""File names of saved LoRAs: safe names, epoch / step names, and never an existing name.

The WebUI lists LoRAs by file name and caches them by name, so a new file never takes a name
already used: `name`, then `name_v2`, `name_v3`, ... Epoch saves are `name-000004` and step
saves `name-step00000100` (kohya's names), versioned the same way. A name counts as used when
any file the LoRA would own exists (the weights, the card's `.json`, the `.preview.png`, or an
older `.pt` / `.ckpt` of that name, which the WebUI would list under the same name).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from ..errors import UserError

LORA_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
PREVIEW_SUFFIX = ".preview.png"
_TAKEN_SUFFIXES = (LORA_SUFFIX, SIDECAR_SUFFIX, PREVIEW_SUFFIX, ".pt", ".ckpt")
_NOT_IN_NAMES = set('/\\<>:"|?*')


def check_output_name(name: str) -> str:
    """The name itself when it is a plain file name; otherwise a UserError saying what is wrong."""
    if not name or not name.strip():
        problem = "it is empty"
    elif "/" in name or "\\" in name or ".." in name:
        problem = "it contains a path separator or '..' (give a name, not a path; use output_dir for the folder)"
    elif any(char in _NOT_IN_NAMES or ord(char) < 32 for char in name):
        problem = 'it contains a character not allowed in file names (< > : " | ? * or a control character)'
    elif name != name.strip() or name.endswith("."):
        problem = "it starts or ends with a space, or ends with a dot"
    else:
        return name
    raise UserError(f"output_name {name!r} cannot be used: {problem}. Use letters, digits, spaces, '-', '_' or '.'.")


def save_stem(name: str, *, epoch: int | None = None, step: int | None = None) -> str:
    """`name`, `name-000004` for an epoch save, `name-step00000100` for a step save."""
    if epoch is not None:
        return f"{name}-{epoch:06d}"
    if step is not None:
        return f"{name}-step{step:08d}"
    return name


def sidecar_path(lora_path: Path) -> Path:
    return lora_path.with_name(lora_path.name.removesuffix(LORA_SUFFIX) + SIDECAR_SUFFIX)


def preview_path(lora_path: Path) -> Path:
    return lora_path.with_name(lora_path.name.removesuffix(LORA_SUFFIX) + PREVIEW_SUFFIX)


def free_lora_path(folder: str | Path, name: str, *, epoch: int | None = None, step: int | None = None) -> Path:
    """The first unused `<stem>[_vN].safetensors` in the folder for this name (checked) and save kind."""
    folder = Path(folder)
    stem = save_stem(check_output_name(name), epoch=epoch, step=step)
    candidates = (stem if version == 1 else f"{stem}_v{version}" for version in itertools.count(1))
    free = next(candidate for candidate in candidates
                if not any((folder / (candidate + suffix)).exists() for suffix in _TAKEN_SUFFIXES))
    return folder / (free + LORA_SUFFIX)
