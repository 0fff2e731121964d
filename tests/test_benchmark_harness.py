"""`make bench` keeps working: the side-by-side harness trains ours on its tiny workload, measures each
run from outside (time; peak memory, split into anonymous and file-backed pages) and writes the page,
saying which references it could not run and why.

Only that it measures, never how fast: speed is for the benchmark itself, not for a timed test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory import PeakSampler  # noqa: E402

HOLD_MEMORY = """
import mmap, sys, time
size = 64 * 2**20
with open(sys.argv[1], "rb") as file:
    mapped = mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ)
    touched = sum(mapped[i] for i in range(0, size, 4096))  # every page of the file, read through the mapping
anonymous = bytearray(b"x" * size)  # written: anonymous pages
time.sleep(1.5)
"""


@pytest.mark.slow
def test_the_harness_measures_our_runs_and_names_the_missing_references(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_BENCH_")}
    out = tmp_path / "RESULTS.md"
    result = subprocess.run([sys.executable, "benchmarks/compare.py", "--steps", "6", "--repeats", "1", "--no-scaling",
                             "--no-real-size", "--threads", "1", "--work", str(tmp_path / "work"), "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    page = out.read_text()
    for label in ("ours, defaults", "ours, caches off"):
        row = next(line for line in page.splitlines() if line.startswith(f"| {label} |"))
        step_s, images_s, wall_s, first_step_s, rss_mb, split = row.split("|")[2:8]
        anon_mb, file_mb = (float(value) for value in split.split("/"))
        assert 0 < float(step_s) and 0 < float(first_step_s) < float(wall_s) and float(rss_mb) > 50, row
        assert anon_mb > 50 and file_mb > 10 and anon_mb + file_mb < 1.2 * float(rss_mb), row
    assert "diffusers' example not run: set LORA_BENCH_DIFFUSERS" in page
    assert re.search(r"lora_train at [0-9a-f]{7}", page)  # the commit measured
    assert "error" not in page.lower()


def test_the_memory_sampler_tells_file_backed_pages_from_anonymous_ones(tmp_path):
    """64 MB of a file read through a mapping and 64 MB written in a child's child: both show, apart."""
    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(64 * 2**20))
    script = tmp_path / "hold.py"
    script.write_text(HOLD_MEMORY)
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])",
                               sys.executable, str(script), str(data)])
    with PeakSampler(parent.pid, interval=0.1) as sampler:
        parent.wait(timeout=60)
    assert sampler.peak.file_mb >= 60 and sampler.peak.anon_mb >= 60, sampler.peak
