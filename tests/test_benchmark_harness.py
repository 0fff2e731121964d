"""`make bench` keeps working: the side-by-side harness trains ours on its tiny workload, measures each
run from outside and writes the page, saying which references it could not run and why.

Only that it measures, never how fast: speed is for the benchmark itself, not for a timed test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_harness_measures_our_runs_and_names_the_missing_references(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_BENCH_")}
    out = tmp_path / "RESULTS.md"
    result = subprocess.run([sys.executable, "benchmarks/compare.py", "--steps", "6", "--repeats", "1", "--no-scaling",
                             "--threads", "1", "--work", str(tmp_path / "work"), "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    page = out.read_text()
    for label in ("ours, defaults", "ours, caches off"):
        row = next(line for line in page.splitlines() if line.startswith(f"| {label} |"))
        step_s, images_s, wall_s, first_step_s, rss_mb = row.split("|")[2:7]
        assert 0 < float(step_s) and 0 < float(first_step_s) < float(wall_s) and float(rss_mb) > 50, row
    assert "diffusers' example not run: set LORA_BENCH_DIFFUSERS" in page
    assert re.search(r"lora_train at [0-9a-f]{7}", page)  # the commit measured
    assert "error" not in page.lower()
