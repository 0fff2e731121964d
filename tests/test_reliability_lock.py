"""One training job at a time: while a live process holds the lock, the `train` command is refused at
once with a message naming it; the lock of a process that was killed is taken over. (A whole job
running over a killed job's lock is in test_reliability_crash.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from corpus import settings_for, write_config
from lora_train.core.lock import TrainingLock
from reliability_support import assert_clean_error, cli_env, run_cli

HOLD = ("import time; from lora_train.core.lock import TrainingLock; "
        "TrainingLock(description='style_v1').acquire(); print('held', flush=True); time.sleep(600)")


@pytest.fixture
def holder(tmp_path):
    """A live process holding the training lock in tmp_path."""
    process = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env=cli_env(tmp_path))
    assert process.stdout.readline() == "held\n"
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


def test_a_second_job_is_refused_while_the_first_runs(holder, tiny_sd1_file, tmp_path):
    outcome = run_cli(write_config(tmp_path / "job.yaml", settings_for(tmp_path, tiny_sd1_file)), tmp_path)

    lock = tmp_path / "lora_train.core.lock"
    assert_clean_error(outcome, rf"Another training job is running \(pid {holder.pid}, since \d\d:\d\d, style_v1\)\. "
                                r"Wait for it to finish or stop it first; only one job runs at a time\. \(If no job is "
                                rf"running, that process is something else: delete {re.escape(str(lock))}\.\)")
    assert not [e for e in outcome.events if e["type"] == "log"], "refused before any work"
    assert json.loads(lock.read_text())["pid"] == holder.pid


def test_the_lock_of_a_killed_job_is_taken_over(holder, tmp_path):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    path = tmp_path / "lora_train.core.lock"
    assert json.loads(path.read_text())["pid"] == holder.pid, "a killed process cannot remove its lock"

    with TrainingLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()
