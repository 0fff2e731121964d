"""The extension inside a real WebUI on CPU (AUTOMATIC1111 1.10.x or Forge): tab, training, Lora list, txt2img.

Skipped unless LORA_TRAIN_WEBUI_DIR names a WebUI checkout whose environment is set up
(LORA_TRAIN_WEBUI_PYTHON, default `<checkout>/venv/bin/python`). Nothing is written into the
checkout: the WebUI runs with a temporary `--data-dir` whose `extensions/lora_train` links to
this repository, the tiny SD1 model (with its `.yaml`, which the WebUI loads too) as the only
checkpoint, and a temporary Lora folder. `--skip-install` skips install.py, so the worker is
this test's interpreter (LORA_TRAIN_PYTHON). A checkout with a `modules_forge` folder is Forge,
which gets its own CPU flags. See docs/webui.md for how to run it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEBUI_DIR = os.environ.get("LORA_TRAIN_WEBUI_DIR")
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.skipif(not WEBUI_DIR, reason="set LORA_TRAIN_WEBUI_DIR to an "
                                                   "AUTOMATIC1111 or Forge checkout to run the WebUI integration test")]
COMMON_FLAGS = ["--skip-prepare-environment", "--skip-install", "--skip-torch-cuda-test", "--api",
                "--no-download-sd-model", "--skip-version-check"]
# Forge cannot load the tiny model (its loader knows models by their UNet and text-encoder shapes).
UNRENDERABLE = "Failed to recognize model type"


def _is_forge(checkout: Path) -> bool:
    return (checkout / "modules_forge").is_dir()


def _cpu_flags(checkout: Path) -> list[str]:
    """Forge's gradio 4 serves files only under --data-dir unless told: its own scripts are in the checkout."""
    if _is_forge(checkout):
        return ["--always-cpu", "--all-in-fp32", "--gradio-allowed-path", str(checkout)]
    return ["--use-cpu", "all", "--no-half", "--precision", "full"]


def _api(url: str, payload: dict | None = None, timeout: float = 600):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def webui(tmp_path_factory, tiny_checkpoints, training_images, free_port, running_server):
    root = tmp_path_factory.mktemp("webui")
    checkout = Path(WEBUI_DIR).resolve()
    python = os.environ.get("LORA_TRAIN_WEBUI_PYTHON") or str(checkout / "venv" / "bin" / "python")
    (root / "extensions").mkdir()
    (root / "extensions" / "lora_train").symlink_to(ROOT, target_is_directory=True)
    models = root / "Stable-diffusion"
    models.mkdir()
    tiny = tiny_checkpoints("sd1")
    shutil.copy(tiny.single_file, models / "tiny-sd1.safetensors")
    shutil.copy(tiny.yaml, models / "tiny-sd1.yaml")
    env = dict(os.environ, LORA_TRAIN_PYTHON=sys.executable, LORA_TRAIN_LOCK_DIR=str(root), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    command = [python, "launch.py", *COMMON_FLAGS, *_cpu_flags(checkout), "--port", str(free_port),
               "--data-dir", str(root), "--ckpt-dir", str(models), "--lora-dir", str(root / "Lora")]
    url = f"http://127.0.0.1:{free_port}"
    with running_server(command, checkout, env, root / "webui.log", f"{url}/sdapi/v1/sd-models", 600):
        yield url, root, _is_forge(checkout)


def _render(url: str, prompt: str, forge: bool) -> bytes:
    payload = dict(prompt=prompt, seed=7, steps=4, width=64, height=64, cfg_scale=5, sampler_name="Euler")
    try:
        return base64.b64decode(_api(f"{url}/sdapi/v1/txt2img", payload)["images"][0])
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        if forge and UNRENDERABLE in body:
            pytest.skip(f"Forge's loader does not recognise the tiny model, so it cannot render ({body[:200]}); "
                        "everything before the render passed")
        raise AssertionError(body[:2000]) from error


def test_tab_trains_on_the_loaded_checkpoint_and_the_lora_works_in_txt2img(webui, browser, training_images):
    url, root, forge = webui
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.locator(".tab-nav button", has_text="Train LoRA").first.click()  # gradio 3 tab buttons have no role
        page.wait_for_selector("#lora_train_start", timeout=60_000)
        # the WebUI loads its checkpoint after the UI is up; the tab follows within seconds
        page.wait_for_function("document.querySelector('#lora_train_model_note').innerText.includes('tiny-sd1')",
                               timeout=120_000)
        assert "SD1" in page.inner_text("#lora_train_model_note")
        assert "tiny-sd1" in page.locator("#lora_train_base_model input").input_value()
        for elem_id, value in (("lora_train_data_dir", training_images), ("lora_train_trigger_word", "zq"),
                               ("lora_train_output_name", "webui_lora"), ("lora_train_resolution", 64),
                               ("lora_train_epochs", 2), ("lora_train_batch_size", 4)):
            box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
            box.fill(str(value))
            box.press("Tab")
        page.click("#lora_train_start")
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and "LoRA saved" not in page.inner_text("#lora_train_result"):
            assert not page.locator("#lora_train_job_note .lora-train-error").count(), page.inner_text(
                "#lora_train_job_note")
            time.sleep(1)
        assert "LoRA saved" in page.inner_text("#lora_train_result")
        page.click("#lora_train_insert")  # gradio 4 runs the event's JavaScript after the click returns
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value"
                               ".includes('<lora:webui_lora:0.8>')", timeout=10_000)
        # ... and refreshes the Lora page, built when the page opened, so the new card is there without a restart
        page.wait_for_selector("#txt2img_lora_cards .card[data-name='webui_lora']", state="attached", timeout=30_000)
    finally:
        page.close()
    assert (root / "Lora" / "webui_lora.safetensors").is_file()
    sidecar = json.loads((root / "Lora" / "webui_lora.json").read_text())  # what the Lora card shows
    assert (sidecar["sd version"], sidecar["activation text"], sidecar["preferred weight"]) == ("SD1", "zq", 0.8)
    assert "webui_lora" in [lora["name"] for lora in _api(f"{url}/sdapi/v1/loras")]
    assert _render(url, "zq", forge) != _render(url, "zq <lora:webui_lora:1>", forge)


def test_caption_section_captions_a_folder_in_the_worker(webui, browser, tmp_path):
    """The Caption section inside the WebUI: the tiny tagger runs in the worker, the captions land beside the images
    and the gallery lists them (written for A1111 1.10's gradio 3 and Forge's gradio 4)."""
    from lora_train.fixtures.captioners import build_tagger, image_folder

    url, _, _ = webui
    folder = image_folder(tmp_path / "to_caption")
    tagger = build_tagger(tmp_path / "tiny-tagger")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.locator(".tab-nav button", has_text="Train LoRA").first.click()
        page.wait_for_selector("#lora_train_caption_run", timeout=60_000)
        for elem_id, value in (("lora_train_data_dir", folder), ("lora_train_trigger_word", "zq"),
                               ("lora_train_caption_model", tagger)):
            box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
            box.fill(str(value))
            box.press("Enter")
            box.press("Tab")
        page.click("#lora_train_caption_run")
        page.wait_for_selector("#lora_train_caption_progress [data-status='done']", state="attached",
                               timeout=300_000)
        page.wait_for_function("document.querySelectorAll('#lora_train_caption_gallery img').length >= 3",
                               timeout=60_000)
    finally:
        page.close()
    assert (folder / "red.txt").read_text().strip() == "zq, red background, ^_^"
    assert (folder / "green.txt").read_text().strip() == "zq, hatsune miku, ^_^"
