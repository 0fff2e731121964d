"""The output folder: created if needed, and checked to be writable before any work starts.

A job killed while saving leaves its temporary file (`.name.XXXXXXXX.tmp`, see export/atomic.py)
or staging checkpoint folder (`checkpoint-N.tmp`) behind; the next job in the folder removes them.
"""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import UserError


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


# What write_new_file's tempfile.mkstemp names and save_checkpoint stages: nothing a user makes.
_PARTIAL_FILE = re.compile(r"\.[^/]+\.(safetensors|json|png|yaml)\.[a-z0-9_]{8}\.tmp")
_PARTIAL_CHECKPOINT = re.compile(r"checkpoint-\d+\.tmp")


def remove_partial_saves(folder: Path) -> list[str]:
    """Delete the partial saves an interrupted job left in `folder`; return their names."""
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and _PARTIAL_FILE.fullmatch(entry.name):
            entry.unlink(missing_ok=True)
        elif entry.is_dir() and not entry.is_symlink() and _PARTIAL_CHECKPOINT.fullmatch(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            continue
        removed.append(entry.name)
    return removed
