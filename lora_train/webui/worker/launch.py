"""The one way the tabs start a worker: `python -m ...` with the engine on its path, one-shot or long-lived.

Every worker (training and captioning jobs, the LLM tab's model worker, the grid, merge and caption-length
commands) gets the same environment (`worker_environ`: unbuffered UTF-8 output, the extension first on
PYTHONPATH) and the same reading of its output. Its stdout carries what it has to say as JSON lines (a job's
events, the model worker's answers, a one-shot command's result); a stray line there is library output and
goes with its stderr. Its stderr is read by one `StderrReader` (every line to the log file when there is one,
tracebacks to the console), and the launcher keeps its last words: when a worker ends without having said
why on stdout, `WorkerProcess.reason` says it from them, the CLI's own `error:` line when there is one.
A worker that cannot start at all raises the one `WorkerError` wording.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

from ...core.errors import UserError
from .background_setup import setup_state
from .environment import EXTENSION_ROOT, WorkerEnv, WorkerEnvError
from .stderr import StderrReader

LAST_WORDS_KEPT = 20
CLI_ERROR = "error: "  # how `python -m lora_train` writes a UserError on stderr
CONSOLE_PREFIX = "[lora_train]"


class WorkerError(UserError):
    """A worker that could not start or ended with an error; the message says why and what to do."""


def worker_environ(python_path: list[str] | None = None) -> dict[str, str]:
    """The worker's environment: this one, with unbuffered UTF-8 output and `python_path` (default: the
    extension's folder) before PYTHONPATH."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    paths = [str(EXTENSION_ROOT)] if python_path is None else python_path
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).strip(os.pathsep)
    return env


def cannot_start(what: str, python: str, exc: OSError) -> WorkerError:
    return WorkerError(f"Could not start the {what} with {python}: {exc}. Check the worker interpreter in the "
                       "settings.")


def resolve_worker_python(setting: str = "", fallback: str | None = None) -> str:
    """The interpreter that runs the workers: LORA_TRAIN_PYTHON, the setting, the worker venv, the fallback.

    Raises WorkerEnvError, with the reason the set-up failed, when there is none.
    """
    for candidate in (os.environ.get("LORA_TRAIN_PYTHON"), setting):
        if candidate and candidate.strip():
            return candidate.strip()
    env = WorkerEnv.default()
    if env.is_ready():
        return str(env.python)
    if fallback:
        return fallback
    state = setup_state(env)
    reason = state.text if state.failed else (
        f"it is being set up in the background (first launch; about a minute; now: {state.text}). The Train LoRA tab "
        "shows the progress and enables Start when it is ready; or set LORA_TRAIN_PYTHON to a Python with the "
        "trainer's packages")
    raise WorkerEnvError(f"The training environment is not ready: {reason}")


def json_record(line: str) -> dict[str, Any] | None:
    """A stdout line as the JSON object it carries; None for anything else (a library's output)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class LastWords:
    """The last lines a worker wrote to stderr (a traceback folded into its last line, `StderrReader`)."""

    def __init__(self, tail: Callable[[str], None] | None = None):
        self.lines: deque[str] = deque(maxlen=LAST_WORDS_KEPT)
        self._tail = tail

    def add(self, line: str) -> None:
        self.lines.append(line)
        if self._tail is not None:
            self._tail(line)

    def text(self, limit: int = 1500) -> str:
        return "\n".join(line for line in self.lines if line.strip())[-limit:]

    def reason(self, code: int | None) -> str:
        """Why the worker failed, in one line: its `error:` line, else its last line, else its exit code."""
        lines = [line for line in self.lines if line.strip()]
        said = next((line.removeprefix(CLI_ERROR) for line in reversed(lines) if line.startswith(CLI_ERROR)), None)
        return said or (lines[-1] if lines else f"exit code {code}")


class WorkerProcess:
    """A long-lived worker `python -m <module> <arguments>`: its JSON lines from `records`, its stderr read in a
    thread into `last_words` (and `tail`, and `log_file` when given)."""

    def __init__(self, python: str, module: str, arguments: list[str], what: str, *,
                 python_path: list[str] | None = None, log_file: Path | None = None,
                 tail: Callable[[str], None] | None = None, cwd: Path | None = None, interactive: bool = False,
                 prefix: str = CONSOLE_PREFIX):
        try:
            self.process = subprocess.Popen([python, "-m", module, *arguments], cwd=cwd,
                                            env=worker_environ(python_path),
                                            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            encoding="utf-8", errors="replace", bufsize=1)
        except OSError as exc:
            raise cannot_start(what, python, exc) from None
        self.last_words = LastWords(tail)
        self.stderr = StderrReader(prefix, self.last_words.add, log_file)
        self.stderr_thread = threading.Thread(target=self.stderr.read, args=(self.process.stderr,), daemon=True)
        self.stderr_thread.start()

    def records(self, accept: Callable[[dict[str, Any]], bool] = lambda record: True) -> Iterator[dict[str, Any]]:
        """The JSON objects the worker writes to stdout, until it closes it; any other line goes with its stderr."""
        for line in self.process.stdout:
            line = line.rstrip("\n")
            record = json_record(line)
            if record is not None and accept(record):
                yield record
            elif line.strip():
                self.stderr.line(line)

    def send(self, record: dict[str, Any]) -> None:
        self.process.stdin.write(json.dumps(record) + "\n")
        self.process.stdin.flush()

    def alive(self) -> bool:
        return self.process.poll() is None

    def ended(self, wait_seconds: float) -> int | None:
        """The exit code once the worker has ended (None while it runs), after waiting up to `wait_seconds` for
        its stderr's last lines."""
        code = self.process.poll()
        if code is not None:
            self.stderr_thread.join(wait_seconds)
        return code


def run_once(python: str, arguments: list[str], what: str, timeout: float | None = None) -> str:
    """Run `python -m lora_train <arguments>` to its end; its stdout, or a WorkerError with its reason."""
    try:
        done = subprocess.run([python, "-m", "lora_train", *arguments], capture_output=True, text=True,
                              encoding="utf-8", errors="replace", env=worker_environ(), stdin=subprocess.DEVNULL,
                              timeout=timeout)
    except OSError as exc:
        raise cannot_start(what, python, exc) from None
    words = LastWords()
    StderrReader(CONSOLE_PREFIX, words.add).read(done.stderr.splitlines())
    if done.returncode != 0:
        raise WorkerError(words.reason(done.returncode))
    return done.stdout
