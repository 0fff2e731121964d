"""The worker's Python environment: a venv in the extension folder that reuses the WebUI's torch.

The WebUI pins old libraries and breaks when an extension upgrades them, so the engine's
dependencies go into a venv of their own (`.venv-worker/` in the extension folder) and never
into the WebUI's environment. The venv is a plain one plus a `.pth` file that adds the WebUI's
site-packages after its own: imports fall back to the host's packages (torch above all), and
pip installs newer versions into the worker venv only (it never uninstalls outside its
environment). torch is pinned to the host's version, without its local label
(`torch==2.14.1`, not `2.14.1+cu130`), so pip never fetches a second torch.

`ensure_worker_env` makes it, writing its steps to the log as it goes (`setup_progress`); it runs in a
background process (`background_setup`), so the WebUI starts at once. A stamp file records what was
installed; a later launch with the same requirements, host torch and interpreter is a no-op.
`LORA_TRAIN_PYTHON` names another interpreter instead (then nothing is installed).
`LORA_TRAIN_WORKER_VENV` and `LORA_TRAIN_WORKER_REQUIREMENTS` move the venv and change the requirements
file (used by the tests, and by users who keep venvs elsewhere). What is installed, and the digest that
tells a current venv, is `requirements`.

Standard library only: `install.py` runs this with the WebUI's interpreter before anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...core.errors import UserError
from ...core.packages import installed
from .requirements import host_pins, host_site_dirs, install_digest, read_requirements
from .setup_progress import step_line

EXTENSION_ROOT = Path(__file__).resolve().parents[3]


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

def _stamp_digest(env: WorkerEnv) -> str | None:
    try:
        return json.loads(env.stamp.read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError):
        return None
