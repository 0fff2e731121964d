"""The worker's Python environment: a venv in the extension folder that reuses the WebUI's torch.

The WebUI pins old libraries and breaks when an extension upgrades them, so the engine's
dependencies go into a venv of their own (`.venv-worker/` in the extension folder) and never
into the WebUI's environment. The venv is a plain one plus a `.pth` file that adds the WebUI's
site-packages after its own: imports fall back to the host's packages (torch above all), and
pip installs newer versions into the worker venv only (it never uninstalls outside its
environment). torch is pinned to the host's version, without its local label
(`torch==2.14.1`, not `2.14.1+cu130`), so pip never fetches a second torch.

The set-up runs in a background process (`start_setup`, from install.py at the WebUI's launch, or
from the tab when install.py never ran), so the WebUI starts at once; it writes its progress to a
log in the venv folder, which the tab shows in words (`setup_state`, `setup_progress`) while Start waits
for it; pip's own lines stay in the log. A stamp file
records what was installed; a later launch with the same requirements, host torch and interpreter
is a no-op. `LORA_TRAIN_PYTHON` names another interpreter instead (then
nothing is installed). `LORA_TRAIN_WORKER_VENV` and `LORA_TRAIN_WORKER_REQUIREMENTS` move the
venv and change the requirements file (used by the tests, and by users who keep venvs elsewhere).
What is installed, and the digest that tells a current venv, is `worker_requirements`.

Standard library only: `install.py` runs this with the WebUI's interpreter before anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.errors import UserError
from ..core.lock import pid_alive
from ..core.packages import installed
from .setup_progress import log_progress, step_line
from .worker_requirements import host_pins, host_site_dirs, install_digest, read_requirements

EXTENSION_ROOT = Path(__file__).resolve().parents[2]


class WorkerEnvError(UserError):
    """The worker environment could not be set up; the message says why and what to do."""


@dataclass(frozen=True)
class WorkerEnv:
    """Where the worker venv lives and which requirements it gets."""

    venv_dir: Path
    requirements: Path

    @classmethod
    def default(cls, root: Path = EXTENSION_ROOT) -> "WorkerEnv":
        venv_dir = os.environ.get("LORA_TRAIN_WORKER_VENV") or root / ".venv-worker"
        requirements = os.environ.get("LORA_TRAIN_WORKER_REQUIREMENTS") or root / "requirements" / "worker.txt"
        return cls(Path(venv_dir), Path(requirements))

    @property
    def python(self) -> Path:
        if os.name == "nt":
            return self.venv_dir / "Scripts" / "python.exe"
        return self.venv_dir / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.venv_dir / "lora_train-installed.json"

    @property
    def error_file(self) -> Path:
        """Written when the set-up failed, so the tab can show the reason."""
        return self.venv_dir / "lora_train-install-error.txt"

    @property
    def log_file(self) -> Path:
        """What the background set-up prints: its steps and pip's output."""
        return self.venv_dir / "lora_train-install.log"

    @property
    def builder_file(self) -> Path:
        """The pid of the background set-up while it runs."""
        return self.venv_dir / "lora_train-installing.pid"

    def is_ready(self) -> bool:
        return self.python.is_file() and self.stamp.is_file()

    def last_error(self) -> str | None:
        try:
            return self.error_file.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None


def _worker_site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _pip(python: Path, args: list[str], log: Callable[[str], None]) -> None:
    """pip install, its output passed on to the log line by line as it comes (the tab reads its progress there,
    `setup_progress`); a failure says what pip said went wrong (its ERROR lines)."""
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *args]
    log("  $ " + " ".join(["pip install", *args]))
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout or ():
            lines.append(line.rstrip())
            log("  " + lines[-1])
    if process.returncode != 0:
        said = [line.strip() for line in lines if line.strip().startswith("ERROR:")] or lines[-3:]
        raise WorkerEnvError(f"pip could not install the trainer's packages (exit code {process.returncode}): "
                             + "\n".join(said[-5:]))


def _remove_venv_parts(folder: Path) -> None:
    for name in ("bin", "Scripts", "lib", "lib64", "Lib", "include", "Include", "pyvenv.cfg"):
        part = folder / name
        if part.is_symlink() or part.is_file():
            part.unlink()
        elif part.is_dir():
            shutil.rmtree(part)


def _create(env: WorkerEnv, log: Callable[[str], None]) -> None:
    normal, no_deps = read_requirements(env.requirements)
    create, swap_onnxruntime = not env.python.is_file(), installed("onnxruntime-gpu")
    count, done = 1 + create + bool(no_deps) + swap_onnxruntime, []

    def step(what: str) -> None:
        done.append(what)
        log(step_line(len(done), count, what))

    if create:
        step(f"creating the worker environment in {env.venv_dir} (once; the WebUI's own packages are not touched)")
        _remove_venv_parts(env.venv_dir)  # of a broken earlier venv; the set-up's own log stays
        venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(env.venv_dir)
        # ensurepip's old setuptools would hide the host's (torch needs a recent one): drop it.
        subprocess.run([str(env.python), "-m", "pip", "uninstall", "-y", "-q", "setuptools"], capture_output=True)
    lines = [f"import site; site.addsitedir({folder!r})" for folder in host_site_dirs()]
    (_worker_site_packages(env.python) / "lora_train_host.pth").write_text("\n".join(lines) + "\n",
                                                                           encoding="utf-8")
    constraints = env.venv_dir / "constraints.txt"
    constraints.write_text("\n".join(host_pins()) + "\n", encoding="utf-8")
    requirements = env.venv_dir / "requirements.txt"
    requirements.write_text("\n".join(normal) + "\n", encoding="utf-8")
    step("installing the trainer's packages (the WebUI's torch is reused)")
    _pip(env.python, ["-r", str(requirements), "-c", str(constraints)], log)
    if no_deps:
        step(f"installing {', '.join(no_deps)} without their dependencies")
        _pip(env.python, ["--no-deps", *no_deps, "-c", str(constraints)], log)
    if swap_onnxruntime:  # the CPU package would hide the host's GPU one from the WD tagger
        step("removing the worker's CPU onnxruntime, so the tagger uses the WebUI's onnxruntime-gpu")
        subprocess.run([str(env.python), "-m", "pip", "uninstall", "-y", "-q", "onnxruntime"], capture_output=True)


def ensure_worker_env(env: WorkerEnv | None = None, log: Callable[[str], None] = print) -> Path:
    """Set up the worker venv unless it is already current; returns the interpreter to run.

    Raises WorkerEnvError (also written to `env.error_file`) when it cannot be set up.
    """
    override = os.environ.get("LORA_TRAIN_PYTHON")
    if override:
        log(f"lora_train: the worker runs with LORA_TRAIN_PYTHON={override}; nothing to install.")
        return Path(override)
    env = env or WorkerEnv.default()
    digest = install_digest(env.requirements)
    if env.is_ready() and _stamp_digest(env) == digest:
        return env.python
    env.error_file.unlink(missing_ok=True)
    env.stamp.unlink(missing_ok=True)  # until pip succeeds, the venv is not known to be complete
    try:
        _create(env, log)
    except (OSError, subprocess.CalledProcessError, WorkerEnvError) as exc:
        message = (f"lora_train: could not set up the worker environment in {env.venv_dir}: {exc}\n"
                   "The WebUI itself is unchanged. Check the network connection and free disk space, then restart "
                   "the WebUI to try again, or set LORA_TRAIN_PYTHON to a Python that has the packages of "
                   f"{env.requirements}.")
        env.venv_dir.mkdir(parents=True, exist_ok=True)
        env.error_file.write_text(message + "\n", encoding="utf-8")
        raise WorkerEnvError(message) from None
    env.stamp.write_text(json.dumps({"digest": digest, "pins": host_pins()}) + "\n", encoding="utf-8")
    env.error_file.unlink(missing_ok=True)
    log(f"lora_train: worker environment ready ({env.python}).")
    return env.python


def needs_setup(env: WorkerEnv) -> bool:
    return not (env.is_ready() and _stamp_digest(env) == install_digest(env.requirements))


def setting_up(env: WorkerEnv) -> bool:
    """Whether a background set-up of `env` runs now."""
    try:
        return pid_alive(int(env.builder_file.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def _spawn_setup(env: WorkerEnv) -> subprocess.Popen:
    """`python -m lora_train.webui.worker_env` in its own session, writing to `env.log_file`."""
    env.venv_dir.mkdir(parents=True, exist_ok=True)
    paths = os.pathsep.join(filter(None, [str(EXTENSION_ROOT), os.environ.get("PYTHONPATH")]))
    child_env = dict(os.environ, PYTHONPATH=paths, LORA_TRAIN_WORKER_VENV=str(env.venv_dir),
                     LORA_TRAIN_WORKER_REQUIREMENTS=str(env.requirements), PYTHONUNBUFFERED="1")
    detach = ({"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
              else {"start_new_session": True})
    with open(env.log_file, "w", encoding="utf-8") as log:
        process = subprocess.Popen([sys.executable, "-m", "lora_train.webui.worker_env"], cwd=EXTENSION_ROOT,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                   **detach)
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


def _stamp_digest(env: WorkerEnv) -> str | None:
    try:
        return json.loads(env.stamp.read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError):
        return None


def resolve_worker_python(setting: str = "", fallback: str | None = None) -> str:
    """The interpreter that runs training: LORA_TRAIN_PYTHON, the setting, the worker venv, the fallback.

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


def _set_up_in_background() -> int:
    """The background set-up's process (`python -m lora_train.webui.worker_env`, started by `start_setup`)."""
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
