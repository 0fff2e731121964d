"""Run one tool once and measure it from outside: wall time, start to first step, step time, peak memory
(the kernel's peak RSS, and the anonymous / file-backed split sampled by memory.py)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from memory import PeakSampler
from tools import Run, command, environment


@dataclass
class Measurement:
    wall_s: float  # process start to exit
    first_step_s: float  # process start to the end of the first optimizer step
    step_s: float  # median step time after warm-up
    rss_mb: float  # peak resident memory of the process (the largest of its processes under torchrun)
    vram_mb: float | None
    steps: int
    error: str | None = None
    anon_mb: float = float("nan")  # anonymous and file-backed resident memory of the process tree, at the
    file_mb: float = float("nan")  # sampled moment its total was largest (memory.py)


def warm_intervals(times: list[float]) -> list[float]:
    """Intervals between optimizer steps after warm-up (the first quarter, at least 2 steps, is left out)."""
    skip = max(2, len(times) // 4)
    return [b - a for a, b in zip(times[skip:], times[skip + 1:])]


def measure(run: Run, folder: Path, launcher: list[str] | None = None) -> Measurement:
    """Run `run` under the probe (through `launcher`, e.g. torchrun, when given) and measure it."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "probe.json"
    argv = command(run, record)
    if launcher:
        argv = [argv[0], *launcher, *argv[1:]]
    log = open(folder / "output.log", "w")
    start = time.time()
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=run.cwd, env=environment(run))
    with PeakSampler(process.pid) as sampler:
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.time() - start
    log.close()
    if status or not record.exists():
        tail = (folder / "output.log").read_text(errors="replace").strip().splitlines()[-3:]
        return Measurement(wall, float("nan"), float("nan"), 0, None, 0, f"exit {status >> 8}: " + " | ".join(tail))
    data = json.loads(record.read_text())
    times = data["steps"]
    intervals = warm_intervals(times)
    return Measurement(wall, times[0] - start if times else float("nan"),
                       statistics.median(intervals) if intervals else float("nan"),
                       usage.ru_maxrss / 1024, data.get("peak_vram_mb"), len(times),
                       anon_mb=sampler.peak.anon_mb, file_mb=sampler.peak.file_mb)


def median(values: list[Measurement]) -> Measurement:
    """Field by field median of the runs that worked (the first error if none did)."""
    good = [m for m in values if m.error is None]
    if not good:
        return values[0]
    pick = lambda name: statistics.median(getattr(m, name) for m in good)  # noqa: E731
    vram = [m.vram_mb for m in good if m.vram_mb is not None]
    return Measurement(pick("wall_s"), pick("first_step_s"), pick("step_s"), pick("rss_mb"),
                       statistics.median(vram) if vram else None, good[0].steps, anon_mb=pick("anon_mb"),
                       file_mb=pick("file_mb"))
