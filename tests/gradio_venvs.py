"""The venvs of the WebUIs' pinned gradios, `.venv-gradio3` / `.venv-gradio4` (requirements/gradio3.txt,
gradio4.txt), made on first use and remade when their requirements change; a test that needs one is skipped,
saying why, only when pip cannot reach a package index."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pinned_gradio_python(name: str) -> Path:
    """.venv-<name>'s interpreter, (re)installed when requirements/<name>.txt changed."""
    venv, requirements = ROOT / f".venv-{name}", ROOT / "requirements" / f"{name}.txt"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if python.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return python
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(sign in output for sign in ("No matching distribution", "Could not find a version",
                                           "NewConnectionError", "Network is unreachable")):
            pytest.skip(f"{requirements.name} could not be installed into {venv} (no package index "
                        f"reachable): {output.strip().splitlines()[-1]}")
        raise AssertionError(output[-3000:])
    stamp.write_text(digest)
    return python
