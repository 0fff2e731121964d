"""The worker's Python environment: a venv in the extension folder that reuses the WebUI's torch.

The WebUI pins old libraries and breaks when an extension upgrades them, so the engine's
dependencies go into a venv of their own (`.venv-worker/` in the extension folder) and never
into the WebUI's environment. The venv is a plain one plus a `.pth` file that adds the WebUI's
site-packages after its own: imports fall back to the host's packages (torch above all), and
pip installs newer versions into the worker venv only (it never uninstalls outside its
environment). torch is pinned to the host's version, without its local label
(`torch==2.14.1`, not `2.14.1+cu130`), so pip never fetches a second torch.

A stamp file records what was installed; a later launch with the same requirements, host
torch and interpreter is a no-op. `LORA_TRAIN_PYTHON` names another interpreter instead (then
nothing is installed). `LORA_TRAIN_WORKER_VENV` and `LORA_TRAIN_WORKER_REQUIREMENTS` move the
venv and change the requirements file (used by the tests, and by users who keep venvs elsewhere).

Standard library only: `install.py` runs this with the WebUI's interpreter before anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import site
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from ..core.errors import UserError
from ..core.packages import installed

EXTENSION_ROOT = Path(__file__).resolve().parents[2]
STAMP_FORMAT = 1
HOST_PACKAGES_PINNED = ("torch", "torchvision", "torchaudio")
NO_DEPS_MARK = "# no-deps"


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

    def is_ready(self) -> bool:
        return self.python.is_file() and self.stamp.is_file()

    def last_error(self) -> str | None:
        try:
            return self.error_file.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None


def host_site_dirs() -> list[str]:
    """The running (host) interpreter's site-packages folders, in import order."""
    dirs = site.getsitepackages() + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    seen: list[str] = []
    for folder in dirs:
        if os.path.isdir(folder) and folder not in seen:
            seen.append(folder)
    return seen


def host_pins() -> list[str]:
    """`torch==X.Y.Z` (and torchvision / torchaudio when present) for the host's versions, no local label."""
    pins = []
    for name in HOST_PACKAGES_PINNED:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")
    return pins


def read_requirements(path: Path) -> tuple[list[str], list[str]]:
    """(normal lines, no-deps lines) of a requirements file; `-r other.txt` is made absolute."""
    normal, no_deps = [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = re.match(r"^(-r|--requirement)\s+(.+)$", line)
        if include:
            normal.append(f"-r {(path.parent / include.group(2).strip()).resolve()}")
        elif line.endswith(NO_DEPS_MARK):
            no_deps.append(line[: -len(NO_DEPS_MARK)].strip())
        else:
            normal.append(line.split(" #")[0].strip())
    return normal, no_deps


def _requirement_files(path: Path) -> list[Path]:
    files = [path]
    for line in read_requirements(path)[0]:
        if line.startswith("-r "):
            files += _requirement_files(Path(line[3:]))
    return files


def install_digest(env: WorkerEnv) -> str:
    """Changes when anything that decides the install changes: requirements, host torch, interpreter."""
    digest = hashlib.sha256(f"{STAMP_FORMAT}\n{sys.version}\n{sys.executable}\n".encode())
    for line in host_pins() + host_site_dirs():
        digest.update(line.encode() + b"\n")
    for file in _requirement_files(env.requirements):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _worker_site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _pip(python: Path, args: list[str], log: Callable[[str], None]) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    log("lora_train: " + " ".join(["pip install", *args]))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise WorkerEnvError(f"pip could not install the trainer's packages (exit code {result.returncode}). "
                             f"Its last lines:\n{tail}")


def _create(env: WorkerEnv, log: Callable[[str], None]) -> None:
    if not env.python.is_file():
        log(f"lora_train: creating the worker environment in {env.venv_dir} (once; the WebUI's own packages "
            "are not touched)")
        venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt", clear=env.venv_dir.exists()).create(env.venv_dir)
        # ensurepip's old setuptools would hide the host's (torch needs a recent one): drop it.
        subprocess.run([str(env.python), "-m", "pip", "uninstall", "-y", "-q", "setuptools"], capture_output=True)
    lines = [f"import site; site.addsitedir({folder!r})" for folder in host_site_dirs()]
    (_worker_site_packages(env.python) / "lora_train_host.pth").write_text("\n".join(lines) + "\n",
                                                                           encoding="utf-8")
    constraints = env.venv_dir / "constraints.txt"
    constraints.write_text("\n".join(host_pins()) + "\n", encoding="utf-8")
    normal, no_deps = read_requirements(env.requirements)
    requirements = env.venv_dir / "requirements.txt"
    requirements.write_text("\n".join(normal) + "\n", encoding="utf-8")
    _pip(env.python, ["-r", str(requirements), "-c", str(constraints)], log)
    if no_deps:
        _pip(env.python, ["--no-deps", *no_deps, "-c", str(constraints)], log)
    if installed("onnxruntime-gpu"):  # the CPU package would hide the host's GPU one from the WD tagger
        log("lora_train: the WebUI has onnxruntime-gpu; removing the worker's CPU onnxruntime so the tagger uses it")
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
    digest = install_digest(env)
    if env.is_ready() and _stamp_digest(env) == digest:
        return env.python
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
    reason = env.last_error() or ("install.py has not set it up yet: restart the WebUI (its console shows the "
                                  "progress), or set LORA_TRAIN_PYTHON to a Python with the trainer's packages")
    raise WorkerEnvError(f"The training environment is not ready: {reason}")
