"""The output folder: created if needed, checked to be writable and to have room before any work starts.

A job killed while saving leaves its temporary file (`.name.XXXXXXXX.tmp`, see core/atomic.py)
or staging checkpoint folder (`checkpoint-<name>-N.tmp`) behind; the next job of that name removes them.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from ..core.atomic import temporary_name_pattern
from ..core.errors import UserError
from ..core.naming import owned_names_pattern
from ..core.resume_folders import staging_pattern
from ..core.units import byte_size


def prepare_output_dir(path: str | Path, key: str = "output_dir") -> Path:
    """The folder, created and checked writable; `key` names the config key in the error."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        raise UserError(f"Cannot write into {key} {folder}: {reason}. Choose a folder you can write to "
                        "(with a few hundred MB free).") from None
    return folder.resolve()


def remove_partial_saves(folder: Path, name: str) -> list[str]:
    """Delete the partial saves an interrupted job named `name` left in `folder`; return their names.

    Only the temporary files of write_new_file for this name's files (`name`, `name_v2`,
    `name-000004`; .safetensors, .json, .preview.png), write_new_folder's staging folders for this
    name (PEFT adapters, and an adapter moved aside while it was replaced) and this job's checkpoint staging
    folders match, so another job's or another program's temporary files in a shared folder (the WebUI's Lora
    folder) are left alone.
    """
    partial_file = temporary_name_pattern(owned_names_pattern(name))
    adapter_folder = temporary_name_pattern(rf"{re.escape(name)}(_v\d+)?")
    partial_folder = re.compile(rf"{adapter_folder.pattern}|{staging_pattern(name).pattern}")
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and partial_file.fullmatch(entry.name):
            entry.unlink(missing_ok=True)
        elif entry.is_dir() and not entry.is_symlink() and partial_folder.fullmatch(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            continue
        removed.append(entry.name)
    return removed


def check_free_space(needs: dict[Path, int]) -> None:
    """Refuse to start when a folder's disk cannot hold what the job will save there (`needs`: bytes).

    Folders on one disk add up. Better told now than after a night of training.
    """
    per_disk: dict[int, list[Path]] = defaultdict(list)
    for folder in needs:
        per_disk[os.stat(folder).st_dev].append(folder)
    for folders in per_disk.values():
        needed, free = sum(needs[folder] for folder in folders), shutil.disk_usage(folders[0]).free
        if needed > free:
            names = " and ".join(str(folder) for folder in folders)
            raise UserError(f"Not enough free space for this job in {names}: its saves need about "
                            f"{byte_size(needed)} and {byte_size(free)} are free. Free some disk space, "
                            "or set output_dir / lora_output_dir to another drive.")
