"""The GPU memory the Auto preset plans for, read from nvidia-smi: other processes' use is taken off, the
tab's own process (the WebUI, whose model is released for training) counts as free."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lora_train.webui.hosts.gpu_memory import MIB, memory_for_training


def fake_smi(folder: Path, total: str, apps: str) -> None:
    script = folder / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
case "$1" in
  --query-gpu=*) printf '%s\\n' "{total}" ;;
  --query-compute-apps=*) printf '{apps}' ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_other_processes_use_is_taken_off_and_ours_counts_as_free(tmp_path, monkeypatch):
    fake_smi(tmp_path, "24564", f"{os.getpid()}, 9000\\n4242, 1500\\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert memory_for_training() == (24564 - 1500) * MIB


def test_no_gpu_or_unreadable_figures_mean_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert memory_for_training() is None  # no nvidia-smi
    fake_smi(tmp_path, "[N/A]", "")
    assert memory_for_training() is None
    fake_smi(tmp_path, "8192", "[N/A], [N/A]\\n")
    assert memory_for_training() == 8192 * MIB
