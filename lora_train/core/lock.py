"""One training job at a time per device: lock files that recover when their owner died.

A job locks each device it trains on (`cpu`, or `cuda:<id>` as CUDA_VISIBLE_DEVICES names the GPUs),
so two jobs on two GPUs of one machine both run, while a second job on a busy GPU (or a second CPU
job: they share the CPU) is refused at once with a message naming the device. Each lock file holds
its owner's pid and start time; a stale lock (crashed or killed owner) is taken over.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError

CPU = "cpu"


def lock_path(device: str = CPU, folder: str | Path | None = None) -> Path:
    """The lock file of one device: `lora_train.cpu.lock`, `lora_train.cuda1.lock`, ..."""
    folder = folder or os.environ.get("LORA_TRAIN_LOCK_DIR") or tempfile.gettempdir()
    return Path(folder) / f"lora_train.{re.sub(r'[^A-Za-z0-9.-]', '', device.replace(':', ''))}.lock"


def device_label(device: str) -> str:
    """`the CPU`, `GPU 1` (CUDA_VISIBLE_DEVICES' numbering, which is nvidia-smi's), ..."""
    return "the CPU" if device == CPU else f"GPU {device.removeprefix('cuda:')}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs (one of another user counts)."""
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
    """`with TrainingLock(devices, description): ...` holds the locks of those devices for the block."""

    def __init__(self, devices: Sequence[str] = (CPU,), description: str = "", folder: str | Path | None = None):
        self.paths = {device: lock_path(device, folder) for device in dict.fromkeys(devices)}
        self.description = description
        self.held: list[Path] = []

    def acquire(self) -> None:
        try:
            for device, path in sorted(self.paths.items()):
                self._acquire_one(device, path)
        except BaseException:
            self.release()
            raise

    def _acquire_one(self, device: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"pid": os.getpid(), "started": time.time(), "job": self.description, "device": device})
        staged = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        staged.write_text(record)
        try:
            for _ in range(2):
                try:  # a hard link appears complete or not at all: no half-written lock to misread
                    os.link(staged, path)
                except FileExistsError:
                    self._refuse_if_owner_alive(device, path)
                    path.unlink(missing_ok=True)  # stale: its owner is gone
                    continue
                self.held.append(path)
                return
        finally:
            staged.unlink(missing_ok=True)
        raise UserError(f"Could not take the training lock {path} of {device_label(device)}; remove the file if no "
                        "job is running there.")

    def _refuse_if_owner_alive(self, device: str, path: Path) -> None:
        owner = _owner(path)
        if not owner or owner.get("pid") == os.getpid() or not pid_alive(int(owner.get("pid", -1))):
            return
        since = time.strftime("%H:%M", time.localtime(owner.get("started", 0)))
        raise UserError(f"Another training job is running on {device_label(device)} (pid {owner['pid']}, since "
                        f"{since}{', ' + owner['job'] if owner.get('job') else ''}). Wait for it to finish or stop "
                        "it first, or train on another GPU (CUDA_VISIBLE_DEVICES); only one job runs on a device at "
                        f"a time. (If no job is running, that process is something else: delete {path}.)")

    def release(self) -> None:
        while self.held:
            self.held.pop().unlink(missing_ok=True)

    def __enter__(self) -> "TrainingLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
