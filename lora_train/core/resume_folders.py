"""Where a job keeps its resume state: `output_dir/checkpoint-<output name>-<step>/` (torch-free).

The folders carry the job's output name, so jobs sharing an output_dir never write into, prune or
resume from each other's. `checkpoint-<step>/` folders, as earlier versions named them for every job,
are still read: `latest` takes one only when the job has none of its own, and a checkpoint records
whose it is (see train/run_record.py). A folder counts once complete (both its files there); a save in
progress is `<folder>.tmp`. The tabs look here for something to resume; the engines save and load
through train/resume_state.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UserError

PREFIX = "checkpoint-"
STATE_FILE = "training_state.pt"
PARAMS_FILE = "lora_params.st"  # not a .safetensors name: the WebUI lists every .safetensors in models/Lora
BEST_FILE = "best_params.st"  # keep_best's weights at the best evaluation, named as PARAMS_FILE is
STAGING_SUFFIX = ".tmp"
FOLDER_FORM = "checkpoint-<output name>-<step>"


def resume_folder(output_dir: str | Path, name: str, step: int) -> Path:
    return Path(output_dir) / f"{PREFIX}{name}-{step}"


def _pattern(name: str) -> str:
    """`checkpoint-<name>-<step>` (group `own`) or an older `checkpoint-<step>`."""
    return rf"{PREFIX}(?P<own>{re.escape(name)}-)?(?P<step>\d+)"


def staging_pattern(name: str) -> re.Pattern[str]:
    """The names of the staging folders of this job's saves (and of older versions' `checkpoint-<step>.tmp`)."""
    return re.compile(_pattern(name) + re.escape(STAGING_SUFFIX))


def is_complete(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file() and (folder / PARAMS_FILE).is_file()


def resume_folders(output_dir: str | Path, name: str, *, older: bool = False) -> list[Path]:
    """This job's complete folders in output_dir, oldest first; with `older`, the `checkpoint-<step>` folders
    of earlier versions instead."""
    found = []
    folder = Path(output_dir)
    for path in folder.glob(f"{PREFIX}*") if folder.is_dir() else []:
        match = re.fullmatch(_pattern(name), path.name)
        if match and bool(match["own"]) != older and is_complete(path):
            found.append((int(match["step"]), path))
    return [path for _, path in sorted(found)]


def latest_resume_folder(output_dir: str | Path, name: str) -> Path | None:
    """The job's newest folder; when it has none, the newest `checkpoint-<step>` of an earlier version."""
    found = resume_folders(output_dir, name) or resume_folders(output_dir, name, older=True)
    return found[-1] if found else None


def resolve_resume_path(value: str, output_dir: str | Path, name: str) -> Path:
    """`latest` -> the job's newest folder in output_dir; otherwise the folder given, checked to be complete."""
    if value == "latest":
        found = latest_resume_folder(output_dir, name)
        if found is None:
            raise UserError(nothing_to_resume(output_dir, name, "resume_from_checkpoint is 'latest', but"))
        return found
    path = Path(value)
    if not is_complete(path):
        raise UserError(f"resume_from_checkpoint: {path} is not a complete checkpoint folder (it needs {STATE_FILE} "
                        f"and {PARAMS_FILE}). Use a {FOLDER_FORM} folder from output_dir, or 'latest'.")
    return path


def nothing_to_resume(output_dir: str | Path, name: str, lead: str = "Nothing to resume:") -> str:
    """What to say when the job has no folder to resume from (naming the other jobs' folders, if any)."""
    others = sorted(path.name for path in Path(output_dir).glob(f"{PREFIX}*")
                    if is_complete(path)) if Path(output_dir).is_dir() else []
    text = (f"{lead} {output_dir} has no {PREFIX}{name}-<step> folder of the job {name!r} yet. Set save_steps so "
            "a run keeps its state, or start without resuming.")
    if others:
        text += (f" The folder holds other jobs' checkpoints ({', '.join(others[-3:])}); to continue one of those, "
                 "set output_name to its job's name.")
    return text


def require_resume_folder(output_dir: str | Path, name: str) -> None:
    """The tabs' check before Resume: a UserError when the job has nothing to resume from."""
    if latest_resume_folder(output_dir, name) is None:
        raise UserError(nothing_to_resume(output_dir, name))
