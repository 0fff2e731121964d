"""Crash safety of the `train` command killed with SIGKILL: inside a LoRA save or a checkpoint save
(tests/patched_cli.py holds the process halfway through the write, so the kill lands there every
time) the earlier files stay whole and nothing sits under the final name; killed mid-run, it resumes
from its last checkpoint, over the lock it left behind, to the LoRA an uninterrupted run makes.
A second Ctrl+C stops at once with a message, not a traceback."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from corpus import write_config
from lora_train.tools.inspect import inspect_lora
from lora_train.core.resume_folders import resolve_resume_path, resume_folders
from lora_train.train.resume_state import load_checkpoint
from reliability_support import Background, run_cli
from train_support import DATASET, FAST, train

pytestmark = pytest.mark.slow


def job_config(folder: Path, base_model: Path, **settings) -> Path:
    """The job `train_support.train` runs, as a config file for the command line."""
    values = {**FAST, "base_model": str(base_model), "train_data_dir": str(DATASET), "output_dir": str(folder / "out"),
              **settings}
    return write_config(folder / "job.yaml", values)


def killed_inside_a_save(fault: str, folder: Path, base_model: Path, **settings) -> Path:
    """Runs the job with `fault` holding it halfway through a save, SIGKILLs it there; returns its output_dir."""
    with Background(job_config(folder, base_model, **settings), folder, fault=fault) as job:
        job.wait_until_paused()
        job.kill()
    return folder / "out"


def test_a_kill_inside_a_lora_save_leaves_the_earlier_lora_whole(tiny_sd1_file, tmp_path):
    # two epochs of two steps: my_lora-000001 after the first, the final my_lora (killed) after the second
    out = killed_inside_a_save("pause-lora-save:2", tmp_path, tiny_sd1_file, epochs=2, batch_size=4,
                               save_every_n_epochs=1)

    earlier = out / "my_lora-000001.safetensors"
    assert sorted(path.name for path in out.glob("*.safetensors")) == [earlier.name], "a file under the final name"
    partial = list(out.glob(".my_lora.safetensors.*.tmp"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < 0.75 * earlier.stat().st_size, \
        "the kill did not land inside the write"
    assert inspect_lora(earlier)["hash_matches"] is True

    rerun = run_cli(tmp_path / "job.yaml", tmp_path)  # the same job again, in the same folder
    assert rerun.code == 0, rerun.stderr
    assert not partial[0].exists(), "the next run removes the partial LoRA"
    assert earlier.is_file() and (out / "my_lora.safetensors").is_file()


def test_a_kill_inside_a_checkpoint_save_leaves_the_previous_checkpoint(tiny_sd1_file, tmp_path):
    out = killed_inside_a_save("pause-checkpoint:2", tmp_path, tiny_sd1_file, max_train_steps=3, save_steps=1)

    staging = out / "checkpoint-my_lora-2.tmp"
    assert (staging / "training_state.pt").stat().st_size > 0, "the kill did not land in the save"
    assert not (out / "checkpoint-my_lora-2").exists()
    assert resolve_resume_path("latest", out, "my_lora") == out / "checkpoint-my_lora-1"
    params, state = load_checkpoint(out / "checkpoint-my_lora-1")
    assert state["progress"]["step"] == 1 and params

    resumed = run_cli(tmp_path / "job.yaml", tmp_path, "--set", "resume_from_checkpoint=latest")
    assert resumed.code == 0, resumed.stderr
    assert [e["step"] for e in resumed.events if e["type"] == "step"] == [2, 3]
    assert not (out / "checkpoint-my_lora-2.tmp").exists(), "the next run removes the partial checkpoint"
    assert any("checkpoint-my_lora-2.tmp" in e.get("message", "") for e in resumed.events if e["type"] == "log")


def test_a_run_killed_mid_way_resumes_to_the_lora_of_an_uninterrupted_run(tiny_sd1_file, tmp_path, monkeypatch):
    settings = dict(max_train_steps=6, save_steps=2, shuffle_caption=True, scheduler="cosine", warmup_steps=1)
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    uninterrupted, _ = train(tiny_sd1_file, tmp_path / "uninterrupted", **settings)
    folder = tmp_path / "killed"
    folder.mkdir()
    config = job_config(folder, tiny_sd1_file, **settings)
    with Background(config, folder) as job:
        job.wait_until(lambda: any(e["type"] == "step" and e["step"] >= 3 for e in job.events()))
        job.kill()
    assert not [e for e in job.events() if e["type"] == "done"], "the run ended before the kill"
    lock = folder / "lora_train.cpu.lock"
    assert json.loads(lock.read_text())["pid"] == job.process.pid, "the killed job should have left its lock"
    last = int(resume_folders(folder / "out", "my_lora")[-1].name.removeprefix("checkpoint-my_lora-"))

    outcome = run_cli(config, folder, "--set", "resume_from_checkpoint=latest")

    assert outcome.code == 0, outcome.stderr
    assert [e["step"] for e in outcome.events if e["type"] == "step"] == list(range(last + 1, 7))
    assert not lock.exists()
    expected, got = load_file(str(uninterrupted)), load_file(outcome.events[-1]["path"])
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_ctrl_c_then_resume_on_the_command_line_finishes_the_lora_it_started(tiny_sd1_file, tmp_path):
    config = job_config(tmp_path, tiny_sd1_file, max_train_steps=12, sample_every_n_steps=1)
    with Background(config, tmp_path) as job:
        job.wait_until(lambda: any(e["type"] == "step" and e["step"] >= 2 for e in job.events()))
        job.process.send_signal(signal.SIGINT)  # the first Ctrl+C: save, then stop
        assert job.process.wait(timeout=300) == 0
    stopped = job.events()[-1]
    out = tmp_path / "out"
    assert stopped["type"] == "done" and stopped["interrupted"] and stopped["path"] == str(out / "my_lora.safetensors")

    resumed = run_cli(config, tmp_path, "--set", "resume_from_checkpoint=latest")
    assert resumed.code == 0, resumed.stderr
    assert resumed.events[-1]["path"] == str(out / "my_lora.safetensors"), "one run, one LoRA"
    assert sorted(path.name for path in out.glob("my_lora*")) == ["my_lora.json", "my_lora.preview.png",
                                                                  "my_lora.safetensors"]
    start = next(e for e in resumed.events if e["type"] == "start")
    assert [step for step, _ in start["losses"]] == list(range(1, stopped["step"] + 1))


def test_a_second_ctrl_c_stops_at_once_with_a_message(tiny_sd1_file, tmp_path):
    config = job_config(tmp_path, tiny_sd1_file, max_train_steps=2, save_steps=1)
    with Background(config, tmp_path, fault="pause-checkpoint:1") as job:
        job.wait_until_paused()
        for _ in range(2):  # the first asks for a stop after the save; the second stops at once
            job.process.send_signal(signal.SIGINT)
            time.sleep(0.5)
        assert job.process.wait(timeout=60) == 130

    last = job.events()[-1]
    assert last["type"] == "error" and last["message"].startswith("Stopped at once (a second Ctrl+C)")
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    assert not (tmp_path / "lora_train.cpu.lock").exists()


def test_only_the_partial_saves_of_our_own_writes_are_removed(tmp_path):
    from lora_train.train.output import remove_partial_saves

    ours = [".style.safetensors.k3j_9x0a.tmp", ".style.preview.png.ab12cd34.tmp", ".style_v2.json.zz99zz99.tmp",
            ".style-000004.safetensors.0a1b2c3d.tmp"]
    users = ["style.safetensors", "notes.tmp", ".hidden.tmp", ".style.safetensors.abc.tmp", ".photo.jpg.ab12cd34.tmp",
             ".other.safetensors.ab12cd34.tmp", ".style.png.ab12cd34.tmp", "checkpoint-3"]
    for name in ours + users:
        (tmp_path / name).write_bytes(b"x")
    staging = ["checkpoint-style-4.tmp", "checkpoint-4.tmp"]  # this job's, and one of an earlier version
    others = ["checkpoint-other-5.tmp", "checkpoint-style_v2-3.tmp"]  # other jobs' saves in progress
    for name in staging + others:
        (tmp_path / name).mkdir()
        (tmp_path / name / "training_state.pt").write_bytes(b"x")

    assert remove_partial_saves(tmp_path, "style") == sorted(ours + staging)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(users + others)
