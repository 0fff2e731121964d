"""File names of saved LoRAs: safe names, epoch names, the files beside a LoRA, and never an existing name.

The WebUI lists LoRAs by file name and caches them by name, so a new file never takes a name
already used: `name`, then `name_v2`, `name_v3`, ... Epoch saves are `name-000004` (kohya's
name), versioned the same way. A name counts as used when
any file the LoRA would own exists (the weights, the card's `.json`, the `.preview.png`, or an
older `.pt` / `.ckpt` of that name, which the WebUI would list under the same name).
A resumed run may take a name it saved under before (its own partial save, core/ownership.py).
`run_name` picks a tab's run name up front, so that its work folder carries the same name.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError
from .ownership import is_own
from .resume_folders import latest_resume_folder

LORA_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
PREVIEW_SUFFIX = ".preview.png"
_OWN_SUFFIXES = (LORA_SUFFIX, SIDECAR_SUFFIX, PREVIEW_SUFFIX)  # the files a run writes for one LoRA
_TAKEN_SUFFIXES = (*_OWN_SUFFIXES, ".pt", ".ckpt")
_NOT_IN_NAMES = set('/\\<>:"|?*')
NAME_ADVICE = "Use letters, digits, spaces, '-', '_' or '.'."


def output_name_problem(name: str) -> str | None:
    """Why `name` cannot be a LoRA file name (config validation and the exporter share this rule), or None."""
    if not name or not name.strip():
        return "it is empty"
    if "/" in name or "\\" in name or ".." in name:
        return "it contains a path separator or '..' (give a name, not a path; use output_dir for the folder)"
    if any(char in _NOT_IN_NAMES or ord(char) < 32 for char in name):
        return 'it contains a character not allowed in file names (< > : " | ? * or a control character)'
    if name != name.strip() or name.startswith(".") or name.endswith("."):
        return "it starts or ends with a space or a dot"
    return None


def check_output_name(name: str) -> str:
    """The name itself when it is a plain file name; otherwise a UserError saying what is wrong."""
    problem = output_name_problem(name)
    if problem is None:
        return name
    raise UserError(f"output_name {name!r} cannot be used: {problem}. {NAME_ADVICE}")


def save_stem(name: str, *, epoch: int | None = None) -> str:
    """`name`, or `name-000004` for an epoch save."""
    return name if epoch is None else f"{name}-{epoch:06d}"


def owned_names_pattern(name: str) -> str:
    """A regex of every file name a run named `name` writes: `name`, `name_v2`, `name-000004`, ... with
    each suffix a LoRA owns (the weights, the card's `.json`, the `.preview.png`)."""
    suffixes = "|".join(re.escape(suffix) for suffix in _OWN_SUFFIXES)
    return rf"{re.escape(name)}(_v\d+)?(-\d+)?(?:{suffixes})"


def lora_files(lora_path: Path) -> tuple[Path, Path, Path]:
    """The LoRA file, its card's sidecar and its preview."""
    return lora_path, sidecar_path(lora_path), preview_path(lora_path)


def sidecar_path(lora_path: Path) -> Path:
    return lora_path.with_name(lora_path.name.removesuffix(LORA_SUFFIX) + SIDECAR_SUFFIX)


def preview_path(lora_path: Path) -> Path:
    return lora_path.with_name(lora_path.name.removesuffix(LORA_SUFFIX) + PREVIEW_SUFFIX)


def versions(stem: str) -> Iterator[str]:
    """`stem`, `stem_v2`, `stem_v3`, ..."""
    return (stem if version == 1 else f"{stem}_v{version}" for version in itertools.count(1))


def _lora_taken(folder: Path, stem: str) -> bool:
    return any((folder / (stem + suffix)).exists() for suffix in _TAKEN_SUFFIXES)


def free_lora_path(folder: str | Path, name: str, *, epoch: int | None = None, run_id: str | None = None) -> Path:
    """The first `<stem>[_vN].safetensors` in the folder for this name (checked) and save kind that is unused, or
    that the run `run_id` saved before (a resumed run replaces its own partial save, never another file)."""
    folder = Path(folder)
    stem = save_stem(check_output_name(name), epoch=epoch)
    return folder / (next(candidate for candidate in versions(stem) if not _lora_taken(folder, candidate)
                          or is_own(folder / (candidate + LORA_SUFFIX), run_id)) + LORA_SUFFIX)


def free_folder_path(folder: str | Path, name: str, *, run_id: str | None = None) -> Path:
    """The first `name`, `name_v2`, ... in the folder that is unused or the run `run_id` saved, for savers that
    write a folder (PEFT adapters)."""
    folder = Path(folder)
    return folder / next(c for c in versions(check_output_name(name))
                         if not (folder / c).exists() or is_own(folder / c, run_id))


def run_name(name: str, *, saves: str | Path, runs: str | Path, resume: bool = False,
             saves_folders: bool = False) -> str:
    """The name a run from a tab saves under, and so its work folder's (`runs/<name>`).

    A new run takes the first of `name`, `name_v2`, ... that no save in `saves` (LoRA files, or adapter
    folders with `saves_folders`) and no earlier run's folder in `runs` uses; a resumed one continues the
    latest of them that kept its state (resume_folders.py)."""
    saves, runs, name = Path(saves), Path(runs), check_output_name(name)
    if resume:
        earlier = itertools.takewhile(lambda run: (runs / run).is_dir(), versions(name))
        return ([run for run in earlier if latest_resume_folder(runs / run, run)] or [name])[-1]
    taken = (lambda run: (saves / run).exists()) if saves_folders else (lambda run: _lora_taken(saves, run))
    return next(run for run in versions(name) if not taken(run) and not (runs / run).exists())
