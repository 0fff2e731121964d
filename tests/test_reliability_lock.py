"""One training job at a time per device: while a live process holds a device's lock, the `train` command
on that device is refused at once with a message naming it and the device; jobs on other GPUs run; the
lock of a process that was killed is taken over. (A whole job running over a killed job's lock is in
test_reliability_crash.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from lora_train.core.errors import UserError

from corpus import settings_for, write_config
from lora_train.core.lock import TrainingLock
from lora_train.train import job
from reliability_support import assert_clean_error, cli_env, run_cli

HOLD = ("import sys, time; from lora_train.core.lock import TrainingLock; "
        "TrainingLock(sys.argv[1:], description='style_v1').acquire(); print('held', flush=True); time.sleep(600)")


@pytest.fixture
def hold(tmp_path):
    """`hold(*devices)`: a live process holding the training locks of those devices in tmp_path."""
    processes = []

    def start(*devices):
        process = subprocess.Popen([sys.executable, "-c", HOLD, *devices], stdout=subprocess.PIPE, text=True,
                                   env=cli_env(tmp_path))
        processes.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture
def holder(hold):
    """A live process holding the CPU's training lock in tmp_path."""
    return hold("cpu")


def test_a_second_job_is_refused_while_the_first_runs(holder, tiny_sd1_file, tmp_path):
    outcome = run_cli(write_config(tmp_path / "job.yaml", settings_for(tmp_path, tiny_sd1_file)), tmp_path)

    lock = tmp_path / "lora_train.cpu.lock"
    assert_clean_error(outcome, rf"Another training job is running on the CPU \(pid {holder.pid}, since \d\d:\d\d, "
                                r"style_v1\)\. Wait for it to finish or stop it first, or train on another GPU "
                                r"\(CUDA_VISIBLE_DEVICES\); only one job runs on a device at a time\. \(If no job is "
                                rf"running, that process is something else: delete {re.escape(str(lock))}\.\)")
    assert not [e for e in outcome.events if e["type"] == "log"], "refused before any work"
    assert json.loads(lock.read_text())["pid"] == holder.pid


def test_the_lock_of_a_killed_job_is_taken_over(holder, tmp_path):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    path = tmp_path / "lora_train.cpu.lock"
    assert json.loads(path.read_text())["pid"] == holder.pid, "a killed process cannot remove its lock"

    with TrainingLock(folder=tmp_path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


@pytest.mark.parametrize("env, devices", [
    ({"CUDA_VISIBLE_DEVICES": "1"}, ["cuda:1"]),
    ({}, ["cuda:0"]),  # one process uses the first GPU it sees
    ({"CUDA_VISIBLE_DEVICES": "2,3", "LOCAL_WORLD_SIZE": "2"}, ["cuda:2", "cuda:3"]),  # accelerate launch on 2
    ({"CUDA_VISIBLE_DEVICES": "1", "ACCELERATE_USE_CPU": "true"}, ["cpu"]),
])
def test_a_job_locks_the_devices_it_trains_on(monkeypatch, env, devices):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)
    for key in ("CUDA_VISIBLE_DEVICES", "LOCAL_WORLD_SIZE", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert job.job_devices() == devices
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert job.job_devices() == ["cpu"]


def test_jobs_on_other_gpus_run_and_the_same_gpu_is_refused_by_name(hold, tmp_path):
    first = hold("cuda:0")
    hold("cuda:1")  # another GPU of the same machine: not refused
    with TrainingLock(["cuda:2", "cuda:3"], folder=tmp_path):
        pass
    with pytest.raises(UserError, match=rf"running on GPU 0 \(pid {first.pid}, .*delete .*lora_train\.cuda0\.lock"):
        TrainingLock(["cuda:3", "cuda:0"], folder=tmp_path).acquire()
    assert not (tmp_path / "lora_train.cuda3.lock").exists(), "a refused job keeps none of the devices"
    hold("cpu")  # CPU jobs share one lock, apart from the GPUs'
    with pytest.raises(UserError, match="running on the CPU"):
        TrainingLock(folder=tmp_path).acquire()
