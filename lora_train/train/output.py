"""The output folder: created if needed, and checked to be writable before any work starts."""

from __future__ import annotations

import errno
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
