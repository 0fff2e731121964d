"""The worker venv's set-up in a background process, and what the tab shows of it meanwhile.

`start_setup` (from install.py at the WebUI's launch, or from the tab when install.py never ran) starts
`python -m lora_train.webui.worker.background_setup`, which runs `environment.ensure_worker_env` and writes
its progress to a log in the venv folder; the tab shows that log in words (`setup_state`, `setup_progress`)
while Start waits for it, and pip's own lines stay in the log.

Standard library only: `install.py` runs this with the WebUI's interpreter before anything else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass

from ...core.lock import pid_alive
from .environment import EXTENSION_ROOT, WorkerEnv, WorkerEnvError, ensure_worker_env, needs_setup
from .setup_progress import log_progress

def setting_up(env: WorkerEnv) -> bool:
    """Whether a background set-up of `env` runs now."""
    try:
        return pid_alive(int(env.builder_file.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def _spawn_setup(env: WorkerEnv) -> subprocess.Popen:
    """`python -m lora_train.webui.worker.background_setup` in its own session, writing to `env.log_file`."""
    env.venv_dir.mkdir(parents=True, exist_ok=True)
    paths = os.pathsep.join(filter(None, [str(EXTENSION_ROOT), os.environ.get("PYTHONPATH")]))
    child_env = dict(os.environ, PYTHONPATH=paths, LORA_TRAIN_WORKER_VENV=str(env.venv_dir),
                     LORA_TRAIN_WORKER_REQUIREMENTS=str(env.requirements), PYTHONUNBUFFERED="1")
    detach = ({"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
              else {"start_new_session": True})
    with open(env.log_file, "w", encoding="utf-8") as log:
        process = subprocess.Popen([sys.executable, "-m", "lora_train.webui.worker.background_setup"],
                                   cwd=EXTENSION_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=child_env, **detach)
    env.builder_file.write_text(str(process.pid), encoding="utf-8")
    return process


def start_setup(env: WorkerEnv | None = None) -> str | None:
    """Start setting up the worker venv in a background process, unless it is current or already under way;
    returns what to tell the user (None: nothing to do). Its output goes to `env.log_file`, not to the caller,
    so a WebUI that waits for install.py's output goes on at once."""
    override = os.environ.get("LORA_TRAIN_PYTHON")
    if override:
        return f"lora_train: the worker runs with LORA_TRAIN_PYTHON={override}; nothing to install."
    env = env or WorkerEnv.default()
    if setting_up(env):
        return f"lora_train: the worker environment is being set up in the background (log: {env.log_file})."
    if not needs_setup(env):
        return None
    try:
        process = _spawn_setup(env)
    except OSError as exc:
        raise WorkerEnvError(f"lora_train: could not start setting up the worker environment in {env.venv_dir} "
                             f"({exc}). Free some disk space or fix the folder's permissions, then restart the "
                             "WebUI, or set LORA_TRAIN_PYTHON to a Python with the trainer's packages.") from None
    threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends (a WebUI keeps running)
    return (f"lora_train: setting up the trainer's worker environment in the background (once; about a minute, "
            f"longer on a slow connection). The WebUI starts meanwhile; the Train LoRA tab shows the progress and "
            f"enables Start when it is ready. Log: {env.log_file}")


@dataclass(frozen=True)
class SetupState:
    """What the tab shows about the worker environment."""

    ready: bool
    text: str = ""  # the latest progress line, or why the set-up failed
    failed: bool = False


def setup_state(env: WorkerEnv | None = None) -> SetupState:
    """Ready, being set up (with the log's latest line), or failed (with the reason). A venv neither ready nor
    being set up nor failed (a WebUI started with --skip-install never runs install.py) starts its set-up."""
    env = env or WorkerEnv.default()
    if setting_up(env):
        return SetupState(False, log_progress(env.log_file))
    if env.is_ready():
        return SetupState(True)
    error = env.last_error()
    if error:
        return SetupState(False, error, failed=True)
    try:
        start_setup(env)
    except WorkerEnvError as exc:
        return SetupState(False, str(exc), failed=True)
    return SetupState(False, "starting")


def _set_up_in_background() -> int:
    """The background set-up's process (`python -m lora_train.webui.worker.background_setup`, from `start_setup`)."""
    env = WorkerEnv.default()
    env.builder_file.write_text(str(os.getpid()), encoding="utf-8")
    try:
        ensure_worker_env(env, log=lambda line: print(line, flush=True))
    except WorkerEnvError as exc:  # also in env.error_file, which the tab shows
        print(exc, flush=True)
        return 1
    finally:
        env.builder_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(_set_up_in_background())
