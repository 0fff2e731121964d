"""One job at a time per group of runners, in a worker process; its live state for the tab to show.

A job runs `<python> -m lora_train <command> ... --events jsonl --stop-file STOP` in its workspace folder
(`train --config job.yaml` for training, `caption DIR ...` for captioning: `JobSpec.arguments`), started
through `launch.WorkerProcess`. A thread reads the JSON-line events from the worker's stdout and folds them
into a `JobState`; the worker's stderr (library output, a traceback) goes to the log tail and train.log, never
onto the console but for a traceback. The state outlives the browser page, so a reload shows the running job
again. Interrupt creates the stop file (the worker saves what it has and ends with `done`, interrupted); a
second Interrupt terminates the process, which the worker also treats as a stop request.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from ...core.errors import UserError
from ...core.events import describe
from ...core.loss_history import read_points, thinned
from .launch import WorkerError, WorkerProcess

LOG_LINES = 200
SAMPLES_KEPT = 8
FINISHED = ("done", "interrupted", "failed")


@dataclass
class JobState:
    """What the tab shows about a job; changed only by the runner's threads, under its lock."""

    name: str
    workspace: Path
    settings: dict[str, Any] = field(default_factory=dict)  # the job's config values that differ from the defaults
    number: int = 0  # the how-manieth job of this process: tells a new job from an old one
    status: str = "starting"  # starting | running | done | interrupted | failed
    step: int = 0
    total: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    its: float | None = None
    eta_s: float | None = None
    loss: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss on held-out rows)
    samples: list[str] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    messages: list[tuple[str, str]] = field(default_factory=list)  # (text, info|warning|error|success)
    lora_path: str | None = None
    summary: str = ""  # how it ended, in the worker's words: the `done` event's message, or why it failed
    stop_requested: bool = False
    ended: bool = False  # the worker has exited and the host's follow-up (publish, reload) is done
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class JobSpec:
    """A job to start: the interpreter, the config values and where the job's files go."""

    python: str
    config: dict[str, Any]
    workspace: Path
    name: str
    python_path: list[str] | None = None  # before PYTHONPATH; None: the extension's folder

    @property
    def config_path(self) -> Path:
        return self.workspace / "job.yaml"

    @property
    def stop_file(self) -> Path:
        return self.workspace / "STOP"

    def arguments(self) -> list[str]:
        """What follows `python -m lora_train`."""
        return ["train", "--config", str(self.config_path), "--events", "jsonl", "--stop-file", str(self.stop_file)]


@dataclass
class Followup:
    """What the host's hooks report back: messages, and where the LoRA ended up."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    lora_path: str | None = None


class JobHooks(Protocol):
    """What the host does around a job: free the GPU before, publish and reload after.

    Both get a copy of the state and return a Followup that the runner folds in.
    """

    def before_start(self, state: JobState) -> Followup: ...

    def after_finish(self, state: JobState) -> Followup: ...


class JobRunner:
    """Starts jobs, one at a time, and keeps the latest one's state."""

    def __init__(self, kind: str = "training", group: list[JobRunner] | None = None) -> None:
        """`kind` names its jobs in messages; of the runners sharing a `group` one runs a job at a time (each
        job moves the WebUI's model out of VRAM and back)."""
        self.kind = kind
        self.group = group if group is not None else []
        self.group.append(self)
        self._lock = threading.Lock()
        self._state: JobState | None = None
        self._worker: WorkerProcess | None = None
        self._thread: threading.Thread | None = None
        self._stop_file: Path | None = None
        self._count = 0

    def snapshot(self) -> JobState | None:
        with self._lock:
            return copy.deepcopy(self._state)

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def running_in_group(self) -> JobRunner | None:
        """The runner of this group (this one included) whose job is running, if any."""
        return next((runner for runner in self.group if runner.busy()), None)

    def ensure_idle(self) -> None:
        """Raise the one "a job is running" message when a job of this runner or of its group is running: before
        a job starts, and before anything else that needs the GPU (a test render, a grid, a merge, an LLM load)."""
        runner = self.running_in_group()
        if runner is not None:
            running = runner._state
            where = f" (step {running.step}/{running.total or '?'})" if running and running.total else ""
            raise UserError(f"A {runner.kind} job is already running: {running.name if running else '?'}{where}: "
                            "wait for it to finish or stop it first (one job runs at a time).")

    def start(self, spec: JobSpec, hooks: JobHooks) -> None:
        with self._lock:
            self.ensure_idle()
            spec.workspace.mkdir(parents=True, exist_ok=True)
            spec.config_path.write_text(yaml.safe_dump(spec.config, sort_keys=False, allow_unicode=True),
                                        encoding="utf-8")
            spec.stop_file.unlink(missing_ok=True)
            self._count += 1
            self._state = JobState(spec.name, spec.workspace, dict(spec.config), self._count)
            self._worker = None
            self._stop_file = spec.stop_file
            self._thread = threading.Thread(target=self._run, args=(spec, hooks, self._state), daemon=True,
                                            name=f"lora_train job {spec.name}")
            self._thread.start()

    def adopt(self, state: JobState | None) -> None:
        """Hold `state`, a job that ended before this process started (`job_record`), until a job starts."""
        with self._lock:
            if self._state is None:
                self._state = state

    def stop(self) -> str:
        """Ask the running job to stop and save; a second call terminates the worker."""
        with self._lock:
            state, worker = self._state, self._worker
            if state is None or not self.busy():
                return f"No {self.kind} job is running."
            if state.stop_requested and worker is not None:
                worker.process.terminate()
                return "Stopping the worker now; it saves what it has before it ends."
            state.stop_requested = True
            self._change(state, lambda: state.log.append("Interrupt requested: saving what was trained so far."))
        self._stop_file.touch()
        return "Stopping: the job saves what it has trained so far, then ends."

    def wait(self, timeout: float | None = None) -> bool:
        """For tests and shutdown: wait for the current job's thread; True when it has ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy()

    def _change(self, state: JobState, update) -> None:
        update()
        state.version += 1

    def _update(self, state: JobState, update) -> None:
        with self._lock:
            self._change(state, update)

    def _run(self, spec: JobSpec, hooks: JobHooks, state: JobState) -> None:
        try:
            self._follow(state, hooks.before_start)
            worker = WorkerProcess(spec.python, "lora_train", spec.arguments(), f"{self.kind} process",
                                   python_path=spec.python_path, log_file=spec.workspace / "train.log",
                                   tail=lambda line: self._update(state, lambda: state.log.append(line)),
                                   cwd=spec.workspace)
            with self._lock:
                self._worker = worker
            for event in worker.records(lambda record: "type" in record):
                self._update(state, lambda: self._apply(state, event))
            worker.process.wait()
            code = worker.ended(10)
            if not state.finished:
                self._update(state, lambda: self._fail(
                    state, f"The {self.kind} process ended without a result (exit code {code}). The log below and "
                           f"{spec.workspace / 'train.log'} say what happened."))
        except WorkerError as exc:
            text = str(exc)
            self._update(state, lambda: self._fail(state, text))
        finally:
            self._follow(state, hooks.after_finish)
            self._update(state, lambda: setattr(state, "ended", True))

    def _follow(self, state: JobState, hook) -> None:
        """Run a host hook on a copy of the state; its problems become warnings, never a crash."""
        try:
            followup = hook(self.snapshot())
        except Exception as exc:
            print(f"[lora_train] {getattr(hook, '__name__', 'hook')}: {type(exc).__name__}: {exc}", file=sys.stderr)
            followup = Followup([(f"{type(exc).__name__}: {exc}", "warning")])

        def fold() -> None:
            state.messages.extend(followup.messages)
            state.lora_path = followup.lora_path or state.lora_path

        self._update(state, fold)

    @staticmethod
    def _fail(state: JobState, text: str) -> None:
        state.status, state.summary = "failed", text
        state.messages.append((text, "error"))

    def _apply(self, state: JobState, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind != "step":
            state.log.append(describe({k: v for k, v in event.items() if k != "detail"}))
        if event.get("detail"):
            print(f"[lora_train] {event['detail']}", file=sys.stderr)
        for key in ("step", "total", "epoch", "epochs", "its", "eta_s", "loss"):
            if key in event:
                setattr(state, key, event[key])
        if kind in ("start", "step", "epoch") and not state.finished:
            state.status = "running"
        if kind == "start":  # a resumed run sends its curve so far: the chart shows it from step 1
            state.losses, state.eval_losses = read_points(event.get("losses")), read_points(event.get("eval_losses"))
        elif kind == "step" and isinstance(event.get("loss"), (int, float)):
            state.losses = thinned([*state.losses, (event["step"], float(event["loss"]))])
        elif kind == "eval" and isinstance(event.get("eval_loss"), (int, float)):
            state.eval_losses.append((event["step"], float(event["eval_loss"])))
        elif kind == "sample" and event.get("path"):
            state.samples = (state.samples + [event["path"]])[-SAMPLES_KEPT:]
        elif kind == "save" and event.get("path"):
            state.saved.append(event["path"])
        elif kind == "log" and event.get("level") == "warning":
            state.messages.append((event.get("message", ""), "warning"))
        elif kind == "done":
            state.status = "interrupted" if event.get("interrupted") else "done"
            state.lora_path, state.summary = event.get("path"), event.get("message") or ""
            state.eta_s = 0
        elif kind == "error":
            self._fail(state, event.get("message") or f"The {self.kind} job failed.")
