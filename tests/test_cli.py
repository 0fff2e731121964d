"""The command line: help lists every subcommand, unbuilt ones say so, and a real run speaks JSON lines
that a front end can follow, leaving the files a user expects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from train_support import DATASET, FAST

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lora_train", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "lora-train"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "train" in result.stdout


def test_help_lists_every_subcommand():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("train", "plan", "caption", "llm", "merge", "resize", "bake", "inspect", "ui", "config", "demo"):
        assert command in result.stdout
    assert "--config" in cli("train", "--help").stdout


def test_config_reference_is_printed():
    result = cli("config")
    assert result.returncode == 0 and "`learning_rate`" in result.stdout and "`train_data_dir`" in result.stdout


def test_bad_config_is_one_clear_line_not_a_traceback(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("base_model: nowhere.safetensors\nlearning_rat: 1\n")
    result = cli("train", "--config", str(config), "--events", "jsonl")
    assert result.returncode == 2
    event = json.loads(result.stdout.strip().splitlines()[-1])
    assert event["type"] == "error" and "Did you mean 'learning_rate'" in event["message"]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_jsonl_events_and_the_files_of_a_run(tiny_sd1_file, tmp_path):
    out = tmp_path / "out"
    settings = {**FAST, "log_with": "tensorboard", "max_train_steps": 4, "batch_size": 4, "save_steps": 2, "save_every_n_epochs": 1,
                "epochs": 2, "sample_every_n_steps": 2, "trigger_word": "lt_shapes", "preferred_weight": 0.7,
                "output_name": "shapes", "training_comment": "ci run"}
    config = tmp_path / "job.yaml"
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    result = cli("train", "--config", str(config), "--set", f"base_model={tiny_sd1_file}",
                 "--set", f"train_data_dir={DATASET}", "--set", f"output_dir={out}", "--events", "jsonl",
                 env={"LORA_TRAIN_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[kinds.index("start")] == "start" and kinds[-1] == "done"
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4] and all(e["total"] == 4 for e in steps)
    assert all({"loss", "lr", "its", "eta_s", "epoch", "epochs"} <= e.keys() for e in steps)
    samples = [Path(e["path"]) for e in events if e["type"] == "sample"]
    assert len(samples) == 3 and all(p.is_file() and p.parent == out / "samples" for p in samples)
    saves = [Path(e["path"]) for e in events if e["type"] == "save"]
    assert {p.name for p in saves} >= {"checkpoint-shapes-2", "checkpoint-shapes-4", "shapes-000001.safetensors",
                                       "shapes.safetensors"}
    final = Path(events[-1]["path"])
    assert final == out / "shapes.safetensors" and "<lora:shapes:0.7>" in events[-1]["message"]

    card = json.loads((out / "shapes.json").read_text())
    assert card == {"description": card["description"], "sd version": "SD1", "activation text": "lt_shapes",
                    "preferred weight": 0.7, "negative text": "", "notes": "ci run"}
    assert (out / "shapes.preview.png").is_file()
    with safe_open(str(final), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_steps"] == "4" and meta["ss_num_epochs"] == "2"
    assert json.loads(meta["ss_tag_frequency"])["tiny_dataset"]["lt_shapes"] == 8
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora" and meta["ss_training_comment"] == "ci run"

    log = (out / "train.log").read_text()
    assert "step 4/4" in log and "done:" in log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(out / "logs"))
    accumulator.Reload()
    assert [s.step for s in accumulator.Scalars("loss/step")] == [1, 2, 3, 4]
    assert accumulator.Tags()["images"], "samples must be logged to TensorBoard"
