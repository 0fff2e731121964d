"""The README's test command runs the whole suite on a fresh machine: `make test` installs Debian's
chromium for the browser tests when it is missing, instead of leaving them skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_browser_installs_chromium_when_missing(tmp_path):
    calls = tmp_path / "calls.txt"
    for tool in ("apt-get", "sudo"):
        stub = tmp_path / tool
        stub.write_text(f'#!/bin/sh\n[ "$(basename "$0")" = sudo ] && exec "$@"\necho "$@" >> {calls}\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run(["make", "-s", "browser", f"CHROMIUM={tmp_path / 'no-such-browser'}"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "update -qq" and lines[1] == "install -y -qq chromium"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_provisions_the_browser_first():
    dry_run = subprocess.run(["make", "-n", "test", "CHROMIUM=/no-such-browser"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert "apt-get install -y -qq chromium" in dry_run.stdout
    assert dry_run.stdout.index("chromium") < dry_run.stdout.index("-m pytest")
