"""The standalone server (`python -m lora_train ui`) on the tiny SD1 model, and Debian's chromium.

One server per module, training with the real engine in a worker process (this interpreter).
Its machine-wide training lock lives in the test's own folder, so jobs of other test runs on
this machine do not interfere. LORA_TRAIN_UI_PYTHON runs the server with another interpreter,
e.g. `.venv-gradio3/bin/python` to drive the tab under A1111's gradio 3.41.2. Skipped, with the
reason, when chromium or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
# Small and quick on CPU; the tab's own fields (epochs, names) are filled in the page.
DEFAULTS = """\
resolution: 64
enable_bucket: false
lora_rank: 4
lora_alpha: 4
optimizer: adamw
scheduler: constant
learning_rate: 1.0e-3
mixed_precision: "no"
log_with: none
sample_steps: 2
sample_every_n_epochs: 2
"""


@pytest.fixture(scope="module")
def training_images(tmp_path_factory) -> Path:
    """8 captioned 64 px images (coloured squares; trigger word zq)."""
    folder = tmp_path_factory.mktemp("data")
    count = 8
    colours = [(220, 40, 40), (40, 80, 220), (40, 170, 60), (230, 200, 40)]
    for index in range(count):
        image = Image.new("RGB", (64, 64), (245, 245, 245))
        image.paste(colours[index % 4], (12 + index, 12, 52, 52 - index))
        image.save(folder / f"{index:02d}.png")
        (folder / f"{index:02d}.txt").write_text(f"zq, a square, colour {index % 4}")
    return folder


@pytest.fixture(scope="module")
def small_run_defaults() -> str:
    """The tab's defaults file (YAML) for small, quick runs at 64 px."""
    return DEFAULTS


@pytest.fixture(scope="module")
def free_port() -> int:
    """A port nothing listens on, for a server of this module."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_checkpoints, training_images) -> Path:
    root = tmp_path_factory.mktemp("tab")
    models = root / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    tiny = tiny_checkpoints("sd1")
    shutil.copy(tiny.single_file, models / "tiny-sd1.safetensors")
    shutil.copy(tiny.yaml, models / "tiny-sd1.yaml")
    (models / "broken.safetensors").write_text("not a model\n")
    shutil.copytree(training_images, root / "data")
    (root / "empty").mkdir()
    (root / "defaults.yaml").write_text(DEFAULTS)
    return root


@pytest.fixture(scope="module")
def tab_server(workspace, free_port):
    """The context manager that runs the standalone server on the workspace's folders until its block ends, its
    address as the value; a second one on the same folders is the same WebUI after a restart."""

    @contextlib.contextmanager
    def serve():
        env = dict(os.environ, LORA_TRAIN_LOCK_DIR=str(workspace), GRADIO_ANALYTICS_ENABLED="False",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
        env.pop("LORA_TRAIN_PYTHON", None)
        command = [os.environ.get("LORA_TRAIN_UI_PYTHON", sys.executable), "-m", "lora_train", "ui", "--python",
                   sys.executable, "--port", str(free_port), "--models-dir", str(workspace / "models"),
                   "--lora-dir", str(workspace / "loras"), "--work-dir", str(workspace / "runs"),
                   "--defaults-file", str(workspace / "defaults.yaml")]
        url = f"http://127.0.0.1:{free_port}/"
        with _running_server(command, workspace, env, workspace / "server.log", url, 90):
            yield url

    return serve


@pytest.fixture(scope="module")
def server(tab_server) -> str:
    with tab_server() as url:
        yield url


@contextlib.contextmanager
def _running_server(command: list[str], cwd: Path, env: dict, log_path: Path, ready_url: str, timeout: float,
                    ready_log: str | None = None):
    """Run a server until the block ends; ready when `ready_url` answers (polled only once `ready_log`, if given,
    is in its output: a request that arrives too early can break a server still adding routes). Its output goes
    to `log_path`."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the server exited: {log_path.read_text()[-4000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer within {timeout:.0f} s: {log_path.read_text()[-4000:]}")
                if ready_log and ready_log not in log_path.read_text(errors="replace"):
                    time.sleep(0.5)
                    continue
                try:
                    urllib.request.urlopen(ready_url, timeout=5)
                    break
                except OSError:
                    time.sleep(0.5)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def running_server():
    """The context manager that runs a server until its block ends (for other servers' fixtures)."""
    return _running_server


@pytest.fixture(scope="module")
def playwright_api():
    """Playwright's sync API; the test is skipped, saying what to install, when Playwright or chromium is missing."""
    api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return api


@pytest.fixture(scope="module")
def browser(playwright_api):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#lora_train_start", timeout=30_000)
    yield page
    page.close()
