"""install.py against a throwaway "WebUI" venv: it returns at once while the worker venv is set up in the
background (the tab shows the progress), and the host's packages stay exactly as they were.

The host venv sees the test venv's packages (torch included) through a `.pth` file, as a WebUI
venv would have its own. The worker requirements are two small wheels built here, served from a
local folder with no index, so the test runs offline in seconds: one plain wheel, and one marked
`# no-deps` whose dependency does not exist anywhere (installing it proves `--no-deps`), plus
`torch`, which must be found in the host and not installed again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from lora_train.webui.worker.setup_progress import progress_text
from lora_train.webui.worker.background_setup import setting_up, setup_state
from lora_train.webui.worker.environment import WorkerEnv

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _wheel(folder: Path, name: str, requires: list[str]) -> None:
    dist = f"{name}-1.0.dist-info"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: 1.0\n{}".format(
        name, "".join(f"Requires-Dist: {r}\n" for r in requires))
    files = {f"{name}/__init__.py": "VALUE = 1\n", f"{dist}/METADATA": meta,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def _run(args: list, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=300)


def _host_state(host_python: Path, site_dir: Path) -> tuple[str, list]:
    freeze = _run([host_python, "-m", "pip", "freeze", "--all"]).stdout
    files = sorted((str(p.relative_to(site_dir)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in site_dir.rglob("*") if p.is_file())
    return freeze, files


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("install")
    host_dir = base / "webui-venv"
    _run([sys.executable, "-m", "venv", host_dir]).check_returncode()
    python = host_dir / "bin" / "python"
    # ensurepip's old setuptools would shadow the one torch was installed with, unlike in a real WebUI venv.
    _run([python, "-m", "pip", "uninstall", "-y", "-q", "setuptools"]).check_returncode()
    site_dir = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site_dir / "test_host_packages.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    wheels = base / "wheels"
    wheels.mkdir()
    _wheel(wheels, "lt_probe", [])
    _wheel(wheels, "lt_probe_nodeps", ["lt-package-that-does-not-exist"])
    requirements = base / "worker.txt"
    requirements.write_text("lt_probe==1.0\ntorch\nlt_probe_nodeps==1.0  # no-deps\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LORA_TRAIN_PYTHON", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(LORA_TRAIN_WORKER_VENV=str(base / "ext" / ".venv-worker"), LORA_TRAIN_WORKER_REQUIREMENTS=str(requirements),
               PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_CONFIG_FILE=os.devnull)
    before = _host_state(python, site_dir)
    start = time.monotonic()
    first = _run([python, ROOT / "install.py"], env)
    returned_s = time.monotonic() - start
    venv_dir = base / "ext" / ".venv-worker"
    progress = wait_for_setup(venv_dir)
    return dict(base=base, python=python, site_dir=site_dir, env=env, before=before, first=first,
                returned_s=returned_s, first_s=time.monotonic() - start, progress=progress,
                worker=venv_dir / "bin" / "python", requirements=requirements)


def wait_for_setup(venv_dir: Path, timeout: float = 240) -> list[str]:
    """Wait for the background set-up to end; returns the progress lines the tab showed meanwhile."""
    env = WorkerEnv(venv_dir, Path("unused"))
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not setting_up(env):
            return seen
        state = setup_state(env)
        if not seen or seen[-1] != state.text:
            seen.append(state.text)
        time.sleep(0.05)
    pytest.fail(f"the worker set-up did not end in {timeout} s: {env.log_file.read_text()}")


def test_first_run_returns_at_once_and_the_tab_shows_the_progress(host):
    assert host["first"].returncode == 0, host["first"].stdout + host["first"].stderr
    assert "in the background" in host["first"].stdout and "Train LoRA tab shows the progress" in host["first"].stdout
    assert host["returned_s"] < 5 < host["first_s"] or host["returned_s"] < host["first_s"] / 3
    shown = host["progress"]  # in words: the step, and the package pip is on; pip's own lines stay in the log
    assert any(line.startswith("step ") and " of " in line for line in shown), shown
    log = (host["base"] / "ext" / ".venv-worker" / "lora_train-install.log").read_text().splitlines()
    assert any("Processing" in line and "lt_probe" in line for line in log) and "worker environment ready" in log[-1]
    pip_lines = [line.strip() for line in log if line.startswith("  ") and line.strip()]
    for text in shown + [progress_text(log[:end]) for end in range(len(log))]:  # also what it said at each line
        assert not any(line in text for line in pip_lines) and "pip install" not in text, text
    assert setup_state(WorkerEnv(host["base"] / "ext" / ".venv-worker", Path("unused"))).ready


def test_first_run_builds_a_worker_that_reuses_the_host_torch(host):
    probe = _run([host["worker"], "-c", "import torch, lt_probe, lt_probe_nodeps, sys; print(torch.__file__); "
                  "print(lt_probe.__file__); print(sys.prefix)"])
    assert probe.returncode == 0, probe.stderr
    torch_file, probe_file, prefix = probe.stdout.split()
    assert torch_file.startswith(sysconfig.get_paths()["purelib"]), "torch must come from the host"
    assert probe_file.startswith(prefix), "new packages go into the worker venv"
    constraints = (Path(prefix) / "constraints.txt").read_text()
    assert "torch==" in constraints and "+" not in constraints


def test_host_packages_are_unchanged(host):
    assert _host_state(host["python"], host["site_dir"]) == host["before"]
    assert "lt_probe" not in host["before"][0]


def test_second_run_is_a_fast_no_op(host):
    start = time.monotonic()
    second = _run([host["python"], ROOT / "install.py"], host["env"])
    elapsed = time.monotonic() - start
    assert second.returncode == 0 and second.stdout == "", second.stdout + second.stderr
    assert elapsed < max(2.0, host["first_s"] / 3)


def test_changed_requirements_install_again_and_a_failure_is_one_clear_message(host):
    env = dict(host["env"])
    broken = host["base"] / "broken.txt"
    broken.write_text("lt-package-that-does-not-exist==1.0\n")
    env["LORA_TRAIN_WORKER_REQUIREMENTS"] = str(broken)
    venv_dir = Path(env["LORA_TRAIN_WORKER_VENV"])
    assert _run([host["python"], ROOT / "install.py"], env).returncode == 0
    wait_for_setup(venv_dir)
    state = setup_state(WorkerEnv(venv_dir, broken))
    assert not state.ready and state.failed and "could not set up the worker environment" in state.text
    assert "lt-package-that-does-not-exist" in state.text and "Traceback" not in state.text
    error_file = venv_dir / "lora_train-install-error.txt"
    assert "lt-package-that-does-not-exist" in error_file.read_text()
    again = _run([host["python"], ROOT / "install.py", "--wait"], host["env"])  # in the foreground
    assert again.returncode == 0 and "ready" in again.stdout
    assert not error_file.exists()
    assert _host_state(host["python"], host["site_dir"]) == host["before"]


def test_lora_train_python_means_nothing_is_installed(tmp_path, host):
    env = dict(host["env"], LORA_TRAIN_PYTHON=sys.executable, LORA_TRAIN_WORKER_VENV=str(tmp_path / "venv"))
    result = _run([host["python"], ROOT / "install.py"], env)
    assert result.returncode == 0 and "nothing to install" in result.stdout
    assert not (tmp_path / "venv").exists()
