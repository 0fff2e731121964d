"""One training job at a time on this machine: a lock file that recovers when its owner died.

The file holds the owner's pid and start time. A second job finds it, checks whether that
process still runs, and refuses with a message if so; a stale lock (crashed or killed
owner) is taken over.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .errors import UserError


def default_lock_path() -> Path:
    folder = os.environ.get("LORA_TRAIN_LOCK_DIR") or tempfile.gettempdir()
    return Path(folder) / "lora_train.core.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class TrainingLock:
    """`with TrainingLock(): ...` holds the machine-wide training lock for the block."""

    def __init__(self, path: Path | None = None, description: str = ""):
        self.path = Path(path) if path else default_lock_path()
        self.description = description
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"pid": os.getpid(), "started": time.time(), "job": self.description})
        staged = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        staged.write_text(record)
        try:
            for _ in range(2):
                try:  # a hard link appears complete or not at all: no half-written lock to misread
                    os.link(staged, self.path)
                except FileExistsError:
                    self._refuse_if_owner_alive()
                    self.path.unlink(missing_ok=True)  # stale: its owner is gone
                    continue
                self.held = True
                return
        finally:
            staged.unlink(missing_ok=True)
        raise UserError(f"Could not take the training lock {self.path}; remove the file if no job is running.")

    def _refuse_if_owner_alive(self) -> None:
        owner = self._owner()
        if not owner or owner.get("pid") == os.getpid() or not _alive(int(owner.get("pid", -1))):
            return
        since = time.strftime("%H:%M", time.localtime(owner.get("started", 0)))
        raise UserError(f"Another training job is running (pid {owner['pid']}, since {since}"
                        f"{', ' + owner['job'] if owner.get('job') else ''}). Wait for it to finish or stop it "
                        "first; only one job runs at a time. (If no job is running, that process is something "
                        f"else: delete {self.path}.)")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "TrainingLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
