"""Resident memory of a process and its children, sampled while it runs: anonymous and file-backed.

A model's weights read from a memory-mapped .safetensors file are file-backed pages (`RssFile`): the
kernel can drop and re-read them. Copies (a cast, a layout change, activations, optimizer state) are
anonymous (`RssAnon`) and stay. The kernel's own peak (`ru_maxrss`) does not tell the two apart, so a
thread reads `/proc/<pid>/status` of the whole process tree every `interval` seconds and keeps the
sample whose total was largest. Pages shared by two processes of the tree count twice.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Resident:
    """Resident MB of a process tree at one moment."""

    anon_mb: float = 0.0
    file_mb: float = 0.0
    shmem_mb: float = 0.0

    @property
    def total_mb(self) -> float:
        return self.anon_mb + self.file_mb + self.shmem_mb

    def __add__(self, other: Resident) -> Resident:
        return Resident(self.anon_mb + other.anon_mb, self.file_mb + other.file_mb, self.shmem_mb + other.shmem_mb)


def process_resident(pid: int) -> Resident:
    """RssAnon / RssFile / RssShmem of one process (zero once it has gone)."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    return Resident(fields.get("RssAnon", 0.0), fields.get("RssFile", 0.0), fields.get("RssShmem", 0.0))


def process_tree(root: int) -> list[int]:
    """`root` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


class PeakSampler:
    """Samples a process tree's resident memory in a thread; `peak` is the sample with the largest total."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak = Resident()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            now = sum((process_resident(pid) for pid in process_tree(self.pid)), Resident())
            if now.total_mb > self.peak.total_mb:
                self.peak = now
