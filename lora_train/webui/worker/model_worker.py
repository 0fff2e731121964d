"""The LLM tab's side of the model worker (`python -m lora_train.text.serve`): start it, ask, get answers.

The worker holds the language model between the tab's actions (load, preview, test), so the WebUI's
process never imports torch. Requests go one at a time (a lock); the answer is read from the worker's
stdout by a thread, so a worker that dies mid-request is noticed and reported with the last lines it
wrote to stderr. It starts through `launch.WorkerProcess` as every worker does: its stderr (and any stray
stdout line) goes to its log file, and only a traceback to the console. The worker starts on the first
request and ends with `close()` or with the process.
"""

from __future__ import annotations

import itertools
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from ...core.errors import UserError
from .launch import WorkerProcess

POLL_SECONDS = 0.5
STDERR_WAIT_SECONDS = 5


class ModelWorker:
    """One worker process, started on demand with the interpreter `python()` returns."""

    def __init__(self, python: Callable[[], str], python_path: list[str] | None, log_file: Callable[[], Path | None]):
        """`log_file()`, read at each start, is where its stderr goes (None: to the kept tail only); `python_path`
        goes before PYTHONPATH (None: the extension's folder)."""
        self._python = python
        self._python_path = python_path
        self._log_file = log_file
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None
        self._answers: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._stderr_reader: threading.Thread | None = None
        self.loaded: dict[str, Any] | None = None  # the model the worker holds, as its last answer described it

    def alive(self) -> bool:
        return self._worker is not None and self._worker.alive()

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """The worker's result for `op`, or a UserError with its message."""
        with self._lock:
            self._ensure_started()
            number = next(self._ids)
            try:
                self._worker.send({"id": number, "op": op, **args})
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
            worker, self._worker, self.loaded = self._worker, None, None
        if worker is None or not worker.alive():
            return
        try:
            worker.send({"id": 0, "op": "quit"})
            worker.process.stdin.close()
            worker.process.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            worker.process.terminate()

    def _ensure_started(self) -> None:
        if self.alive():
            return
        self.loaded = None
        self._worker = WorkerProcess(self._python(), "lora_train.text.serve", [], "model worker",
                                     python_path=self._python_path, log_file=self._log_file(), interactive=True,
                                     prefix="[lora_train llm]")
        self._stderr_reader = self._worker.stderr_thread
        self._answers = queue.Queue()
        threading.Thread(target=self._read_answers, args=(self._worker, self._answers), daemon=True).start()

    @staticmethod
    def _read_answers(worker: WorkerProcess, answers: queue.Queue) -> None:
        for answer in worker.records():
            answers.put(answer)

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
        worker = self._worker
        code = worker.ended(STDERR_WAIT_SECONDS) if worker else None  # its last lines say why
        self.loaded = None
        tail = worker.last_words.text() if worker else ""
        log = worker.stderr.log_file if worker else None
        return UserError(f"The model worker stopped (exit code {code}); the model is no longer loaded. Its last "
                         f"words:\n{tail or '(nothing)'}" + (f"\nAll it wrote is in {log}." if log else ""))
