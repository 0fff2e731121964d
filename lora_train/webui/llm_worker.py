"""The LLM tab's side of the model worker (`python -m lora_train.text.serve`): start it, ask, get answers.

The worker holds the language model between the tab's actions (load, preview, test), so the WebUI's
process never imports torch. Requests go one at a time (a lock); the answer is read from the worker's
stdout by a thread, so a worker that dies mid-request is noticed and reported with the last lines it
wrote to stderr. Its stderr (and any stray stdout line) goes to its log file, and only a traceback to the
console (`worker_stderr`, as for every worker). The worker starts on the first request and ends with
`close()` or with the process.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ..core.errors import UserError
from .worker_stderr import StderrReader

STDERR_KEPT = 20
POLL_SECONDS = 0.5
STDERR_WAIT_SECONDS = 5


class ModelWorker:
    """One worker process, started on demand with the interpreter `python()` returns."""

    def __init__(self, python: Callable[[], str], python_path: list[str], log_file: Callable[[], Path | None]):
        """`log_file()`, read at each start, is where its stderr goes (None: to the kept tail only)."""
        self._python = python
        self._python_path = python_path
        self._log_file = log_file
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._answers: queue.Queue = queue.Queue()
        self._stderr: deque = deque(maxlen=STDERR_KEPT)
        self._ids = itertools.count(1)
        self._stderr_reader: threading.Thread | None = None
        self._output: StderrReader | None = None
        self.loaded: dict[str, Any] | None = None  # the model the worker holds, as its last answer described it

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """The worker's result for `op`, or a UserError with its message."""
        with self._lock:
            self._ensure_started()
            number = next(self._ids)
            try:
                self._process.stdin.write(json.dumps({"id": number, "op": op, **args}) + "\n")
                self._process.stdin.flush()
            except OSError:
                raise self._died() from None
            answer = self._wait_for(number)
        self.loaded = answer.get("loaded")
        if not answer.get("ok"):
            raise UserError(answer.get("error") or f"The model worker could not {op}.")
        return answer.get("result") or {}

    def close(self) -> None:
        """Ask the worker to quit (it frees the model); terminate it if it does not."""
        with self._lock:
            process, self._process, self.loaded = self._process, None, None
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.write(json.dumps({"id": 0, "op": "quit"}) + "\n")
            process.stdin.close()
            process.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            process.terminate()

    def _ensure_started(self) -> None:
        if self.alive():
            return
        self.loaded = None
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        env["PYTHONPATH"] = os.pathsep.join([*self._python_path, env.get("PYTHONPATH", "")]).strip(os.pathsep)
        python = self._python()
        try:
            self._process = subprocess.Popen([python, "-m", "lora_train.text.serve"], env=env, text=True,
                                             encoding="utf-8", errors="replace", bufsize=1, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise UserError(f"Could not start the model worker with {python}: {exc}. Check the worker interpreter "
                            "in the settings.") from None
        self._answers = queue.Queue()
        self._stderr.clear()
        self._output = StderrReader("[lora_train llm]", self._stderr.append, self._log_file())
        threading.Thread(target=self._read_answers, args=(self._process, self._answers, self._output),
                         daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._output.read, args=(self._process.stderr,), daemon=True)
        self._stderr_reader.start()

    @staticmethod
    def _read_answers(process: subprocess.Popen, answers: queue.Queue, output: StderrReader) -> None:
        for line in process.stdout:
            try:
                answers.put(json.loads(line))
            except ValueError:  # a library that wrote to the real stdout
                output.line(line.rstrip("\n"))

    def _wait_for(self, number: int) -> dict[str, Any]:
        while True:
            try:
                answer = self._answers.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not self.alive():
                    raise self._died() from None
                continue
            if answer.get("id") == number:
                return answer

    def _died(self) -> UserError:
        code = self._process.poll() if self._process else None
        if code is not None and self._stderr_reader is not None:
            self._stderr_reader.join(STDERR_WAIT_SECONDS)  # its last lines say why
        self.loaded = None
        tail = "\n".join(line for line in self._stderr if line.strip())[-1500:]
        log = self._output.log_file if self._output else None
        return UserError(f"The model worker stopped (exit code {code}); the model is no longer loaded. Its last "
                         f"words:\n{tail or '(nothing)'}" + (f"\nAll it wrote is in {log}." if log else ""))
