"""Two training processes (`accelerate launch` / torchrun, gloo on CPU) split the batches, agree on
stopping, and write one LoRA; an interrupted two-process run resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
import torch

from train_support import DATASET, FAST

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def launch(tmp_path: Path, base_model: Path, out: Path, **settings) -> list[dict]:
    values = {**FAST, "base_model": str(base_model), "train_data_dir": str(DATASET), "output_dir": str(out),
              "batch_size": 2, **settings}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "lora_train", "train", "--events", "jsonl", "--stop-file", str(out) + ".stop"]
    for key, value in values.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "LORA_TRAIN_LOCK_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_two_processes_share_the_epoch_and_save_once(tiny_sd1_file, tmp_path):
    events = launch(tmp_path, tiny_sd1_file, tmp_path / "out", epochs=2)
    kinds = [e["type"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1, "only the main process reports"
    # 8 images, batch 2: 4 batches an epoch, 2 for each process -> 2 steps an epoch
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3, 4]
    assert events[-1]["total"] == 4
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == ["my_lora.safetensors"]


def test_a_two_process_run_resumes_exactly(tiny_sd1_file, tmp_path):
    settings = dict(max_train_steps=4, save_steps=1, epochs=2)
    launch(tmp_path, tiny_sd1_file, tmp_path / "straight", **settings)
    stop_file = tmp_path / "resumed.stop"
    stop_file.touch()  # seen after the first step by one process; both stop there
    stopped = launch(tmp_path, tiny_sd1_file, tmp_path / "resumed", **settings)
    assert stopped[-1]["interrupted"] and stopped[-1]["step"] == 1
    stop_file.unlink()
    resumed = launch(tmp_path, tiny_sd1_file, tmp_path / "resumed", resume_from_checkpoint="latest", **settings)
    assert [e["step"] for e in resumed if e["type"] == "step"] == [2, 3, 4]
    expected = load_file(str(tmp_path / "straight" / "my_lora.safetensors"))
    # A resumed run is the same run: it finishes the LoRA it started, replacing its own partial save.
    assert not (tmp_path / "resumed" / "my_lora_v2.safetensors").exists()
    got = load_file(str(tmp_path / "resumed" / "my_lora.safetensors"))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
