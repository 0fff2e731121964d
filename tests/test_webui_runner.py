"""The job runner with a stand-in worker: events become state, stop files stop, one job at a time.

The stand-in is a `lora_train` package put first on the worker's PYTHONPATH, so the runner
starts it with the real command line (`-m lora_train train --config ... --stop-file ...`). Its
behaviour comes from the `fake_mode` key of the job's config.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from lora_train.core.errors import UserError
from lora_train.webui.worker.runner import Followup, JobRunner, JobSpec
from lora_train.webui.worker.stderr import StderrReader

FAKE_MAIN = textwrap.dedent('''
    import json, sys, time, argparse, pathlib, yaml
    parser = argparse.ArgumentParser()
    parser.add_argument("command"); parser.add_argument("--config"); parser.add_argument("--events")
    parser.add_argument("--stop-file")
    args = parser.parse_args()
    config = yaml.safe_load(open(args.config))
    mode = config["fake_mode"]
    def emit(kind, **fields):
        print(json.dumps(dict(type=kind, **fields)), flush=True)
    out = pathlib.Path(config["output_dir"])
    if mode == "noisy":  # what transformers does in a worker: a FutureWarning, through the warnings module
        import warnings
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
    if mode == "crash":
        print("some progress text", file=sys.stderr, flush=True)
        raise RuntimeError("worker bug")
    if mode == "error":
        emit("error", message="'base_model': x.txt is not a checkpoint.", detail="Traceback (most recent call last): ...")
        sys.exit(2)
    emit("start", step=0, total=5, epoch=1, epochs=5)
    print("not json", flush=True)
    for step in range(1, 6):
        if pathlib.Path(args.stop_file).exists():
            (out / "partial.safetensors").write_bytes(b"x")
            emit("done", step=step - 1, total=5, path=str(out / "partial.safetensors"), interrupted=True)
            sys.exit(0)
        emit("step", step=step, total=5, epoch=step, epochs=5, loss=1.0 / step, its=2.0, eta_s=5 - step)
        emit("log", message="3 images have no caption", level="warning") if step == 1 else None
        time.sleep(0.05 if mode == "quick" else 0.4)
    (out / "samples").mkdir(exist_ok=True)
    emit("sample", step=5, path=str(out / "samples" / "s.png"))
    (out / "final.safetensors").write_bytes(b"x")
    emit("done", step=5, total=5, path=str(out / "final.safetensors"), message="Saved")
''')


class RecordingHooks:
    def __init__(self):
        self.calls = []

    def before_start(self, state):
        self.calls.append(("before", state.status))
        return Followup([("model moved out of VRAM", "info")])

    def after_finish(self, state):
        self.calls.append(("after", state.status))
        return Followup([("model reloaded", "info")])


@pytest.fixture
def fake_worker(tmp_path) -> Path:
    package = tmp_path / "fake" / "lora_train"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_MAIN)
    return package.parent


def _spec(tmp_path: Path, fake_worker: Path, mode: str, name: str = "job") -> JobSpec:
    workspace = tmp_path / name
    return JobSpec(sys.executable, {"fake_mode": mode, "output_dir": str(workspace)}, workspace, name,
                   [str(fake_worker)])


def test_events_fill_the_state_and_hooks_run_around_the_job(tmp_path, fake_worker):
    runner, hooks = JobRunner(), RecordingHooks()
    runner.start(_spec(tmp_path, fake_worker, "quick"), hooks)
    assert runner.wait(60)
    state = runner.snapshot()
    assert state.status == "done" and state.ended
    assert (state.step, state.total, state.epochs) == (5, 5, 5)
    assert [step for step, _ in state.losses] == [1, 2, 3, 4, 5]
    assert state.lora_path.endswith("final.safetensors")
    assert state.samples[-1].endswith("s.png")
    assert ("3 images have no caption", "warning") in state.messages
    assert ("model moved out of VRAM", "info") in state.messages and ("model reloaded", "info") in state.messages
    assert "not json" in state.log
    assert hooks.calls == [("before", "starting"), ("after", "done")]
    assert (tmp_path / "job" / "job.yaml").is_file()


def test_interrupt_saves_a_partial_lora_and_a_second_job_is_refused(tmp_path, fake_worker):
    runner, hooks = JobRunner(), RecordingHooks()
    runner.start(_spec(tmp_path, fake_worker, "slow"), hooks)
    with pytest.raises(UserError, match="already running: job"):
        runner.start(_spec(tmp_path, fake_worker, "quick", "other"), hooks)
    while not runner.snapshot().step:
        runner.wait(0.1)
    assert "saves what it has" in runner.stop()
    assert runner.wait(60)
    state = runner.snapshot()
    assert state.status == "interrupted" and state.lora_path.endswith("partial.safetensors")
    assert state.step < 5
    assert hooks.calls[-1] == ("after", "interrupted")
    assert runner.stop() == "No training job is running."


def test_one_job_of_any_kind_runs_at_a_time(tmp_path, fake_worker):
    """Training, captioning and LLM training each move the WebUI's model out of VRAM and back: while one
    runs, the others are refused with a message naming the running job; runners of another group are not."""
    group: list[JobRunner] = []
    training, captioning = JobRunner("training", group), JobRunner("captioning", group)
    elsewhere, hooks = JobRunner(), RecordingHooks()
    captioning.start(_spec(tmp_path, fake_worker, "slow", "tagging"), hooks)
    try:
        with pytest.raises(UserError, match="A captioning job is already running: tagging"):
            training.start(_spec(tmp_path, fake_worker, "quick", "lora"), hooks)
        assert not training.busy()
        assert training.running_in_group() is captioning  # what test renders, grids and LLM loads check
        assert elsewhere.running_in_group() is None
        elsewhere.start(_spec(tmp_path, fake_worker, "quick", "apart"), hooks)
        assert elsewhere.wait(60)
    finally:
        captioning.stop()
        assert captioning.wait(60)
    assert training.running_in_group() is None
    training.start(_spec(tmp_path, fake_worker, "quick", "lora"), hooks)
    assert training.wait(60) and training.snapshot().status == "done"


def test_the_extensions_runners_share_one_group():
    from lora_train.webui.worker import jobs

    assert jobs.EXCLUSIVE == [jobs.TRAINING, jobs.CAPTIONING, jobs.LLM_TRAINING]
    assert all(runner.group is jobs.EXCLUSIVE for runner in jobs.EXCLUSIVE)


def test_an_error_event_is_one_message_and_a_crash_never_shows_a_traceback(tmp_path, fake_worker):
    runner, hooks = JobRunner(), RecordingHooks()
    runner.start(_spec(tmp_path, fake_worker, "error"), hooks)
    runner.wait(60)
    state = runner.snapshot()
    assert state.status == "failed"
    assert ("'base_model': x.txt is not a checkpoint.", "error") in state.messages
    runner.start(_spec(tmp_path, fake_worker, "crash", "crash"), hooks)
    runner.wait(60)
    state = runner.snapshot()
    assert state.status == "failed" and hooks.calls[-1] == ("after", "failed")
    errors = [text for text, level in state.messages if level == "error"]
    assert errors and "ended without a result (exit code 1)" in errors[0]
    log = "\n".join(state.log)
    assert "some progress text" in log and "RuntimeError: worker bug" in log
    assert "Traceback" not in log and 'File "' not in log


def test_a_missing_interpreter_is_a_message(tmp_path, fake_worker):
    runner, hooks = JobRunner(), RecordingHooks()
    spec = _spec(tmp_path, fake_worker, "quick")
    spec.python = str(tmp_path / "no-such-python")
    runner.start(spec, hooks)
    runner.wait(30)
    state = runner.snapshot()
    errors = [text for text, level in state.messages if level == "error"]
    assert state.status == "failed" and "Could not start the training process" in errors[0]
    assert hooks.calls[-1] == ("after", "failed")


def test_library_noise_stays_in_the_log_and_only_a_traceback_reaches_the_console(tmp_path, fake_worker, capfd):
    runner, hooks = JobRunner(), RecordingHooks()
    runner.start(_spec(tmp_path, fake_worker, "noisy"), hooks)
    assert runner.wait(60) and runner.snapshot().status == "done"
    assert "is_gradient_checkpointing" not in capfd.readouterr().err  # the WebUI's console
    assert any("FutureWarning: `is_gradient_checkpointing` is deprecated" in line for line in runner.snapshot().log)
    assert "FutureWarning: `is_gradient_checkpointing` is deprecated" in (tmp_path / "job" / "train.log").read_text()

    runner.start(_spec(tmp_path, fake_worker, "crash", "crash"), hooks)
    assert runner.wait(60)
    console = capfd.readouterr().err
    assert "[lora_train] Traceback (most recent call last):" in console and "[lora_train] RuntimeError: worker bug" \
        in console and "some progress text" not in console
    log_file = (tmp_path / "crash" / "train.log").read_text()
    assert "some progress text" in log_file and "Traceback" in log_file and "RuntimeError: worker bug" in log_file


def test_a_traceback_is_folded_into_its_last_line_in_the_tail(tmp_path, capsys):
    tail: list[str] = []
    lines = ["before", "Traceback (most recent call last):", '  File "x.py", line 1', "    boom()",
             "ValueError: bad", "", "During handling of the above exception, another exception occurred:", "",
             "Traceback (most recent call last):", '  File "x.py", line 3', "KeyError: 'k'", "after", ""]
    StderrReader("[w]", tail.append, tmp_path / "w.log").read(line + "\n" for line in lines)
    assert tail == ["before", "ValueError: bad (the worker's traceback was printed to the console)",
                    "KeyError: 'k' (the worker's traceback was printed to the console)", "after"]
    console = lines[1:5] + lines[6:11]  # the tracebacks (the blank line between them is not known to be one)
    assert capsys.readouterr().err.splitlines() == [f"[w] {line}" for line in console]
    assert (tmp_path / "w.log").read_text().splitlines() == lines
