"""Running the `train` command for the reliability tests, in a subprocess (optionally with a fault
planted by tests/patched_cli.py) or in-process, and reading what the user sees: the exit code, the
JSON-line events and the text on stderr."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lora_train import cli

ROOT = Path(__file__).resolve().parents[1]
PATCHED_CLI = Path(__file__).with_name("patched_cli.py")


@dataclass
class Outcome:
    code: int
    events: list[dict]
    stderr: str


def train_args(config: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(config), "--events", "jsonl", *extra]


def command(fault: str | None, marker: Path | None) -> list[str]:
    """The interpreter and script to run the CLI: plain, or with a fault planted."""
    if fault is None:
        return [sys.executable, "-m", "lora_train"]
    return [sys.executable, str(PATCHED_CLI), fault, str(marker), "--"]


def cli_env(lock_dir: Path) -> dict[str, str]:
    return {**os.environ, "LORA_TRAIN_LOCK_DIR": str(lock_dir)}


def parse_events(text: str) -> list[dict]:
    """Every line must be one JSON event: anything else would break a front end reading them."""
    return [json.loads(line) for line in text.splitlines()]


def run_cli(config: Path, lock_dir: Path, *extra: str, fault: str | None = None) -> Outcome:
    """`python -m lora_train train --config ... --events jsonl` in a subprocess, to its end."""
    result = subprocess.run(command(fault, None) + train_args(config, *extra), capture_output=True, text=True,
                            cwd=ROOT, env=cli_env(lock_dir), timeout=600)
    return Outcome(result.returncode, parse_events(result.stdout), result.stderr)


def run_cli_in_process(config: Path, capsys) -> Outcome:
    """The same command in this process (monkeypatched faults apply), its output taken from capsys."""
    code = cli.main(train_args(config))
    out, err = capsys.readouterr()
    return Outcome(code, parse_events(out), err)


def assert_clean_error(outcome: Outcome, pattern: str) -> None:
    """The job ended with one `error` event matching `pattern`, as a user error: no traceback anywhere."""
    last = outcome.events[-1]
    assert last["type"] == "error", outcome.events
    assert re.search(pattern, last["message"]), last["message"]
    assert outcome.code == 2 and "detail" not in last, "reported as a bug, not as a user error"
    assert "Traceback" not in outcome.stderr, outcome.stderr


class Background:
    """A `train` command running in the background (`with Background(...) as job:`), its events going to
    a file as they come; leaving the block kills it if it still runs."""

    def __init__(self, config: Path, folder: Path, fault: str | None = None):
        self.events_file, self.marker = folder / "events.jsonl", folder / "paused"
        self.stderr = open(folder / "stderr.txt", "w+")
        self.process = subprocess.Popen(
            command(fault, self.marker) + ["train", "--config", str(config), "--events", "none", "--events-file",
                                           str(self.events_file)],
            stdout=subprocess.DEVNULL, stderr=self.stderr, cwd=ROOT, env=cli_env(folder))

    def events(self) -> list[dict]:
        text = self.events_file.read_text() if self.events_file.exists() else ""
        return parse_events(text[: text.rfind("\n") + 1])  # a line being written is not an event yet

    def wait_until(self, condition: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                self.stderr.seek(0)
                raise AssertionError(f"the job ended first (exit {self.process.returncode}): {self.stderr.read()}")
            assert time.monotonic() < deadline, f"timed out; events so far: {self.events()}"
            time.sleep(0.05)

    def wait_until_paused(self) -> None:
        self.wait_until(self.marker.exists)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.kill()
        self.stderr.close()
