"""The GPU memory a training job can have, read torch-free from `nvidia-smi`: the first GPU's total less what
other processes use. This process's own use counts as free, because the tab releases the WebUI's model
before training (`Host.release_model`)."""

from __future__ import annotations

import os
import shutil
import subprocess

MIB = 1024 ** 2


def memory_for_training() -> int | None:
    """Bytes a job may use on the first NVIDIA GPU; None without one (or without nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    total = _query(smi, "--query-gpu=memory.total")
    apps = _query(smi, "--query-compute-apps=pid,used_memory")
    if not total or not total[0].isdigit():
        return None
    rows = [row.split(",") for row in apps]
    others = sum(int(row[1]) for row in rows if len(row) == 2 and row[0].isdigit() and row[1].isdigit()
                 and int(row[0]) != os.getpid())
    return (int(total[0]) - others) * MIB


def _query(smi: str, query: str) -> list[str]:
    """The rows of one nvidia-smi CSV query (no header, no units); [] when it fails."""
    try:
        done = subprocess.run([smi, query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.replace(" ", "") for line in done.stdout.splitlines() if line.strip()]
