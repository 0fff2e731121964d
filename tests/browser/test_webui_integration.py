"""The extension inside a real WebUI on CPU (AUTOMATIC1111 1.10.x or Forge): tab, training, Lora cards, renders.

Skipped unless LORA_TRAIN_WEBUI_DIR names a WebUI checkout whose environment is set up
(LORA_TRAIN_WEBUI_PYTHON, default `<checkout>/venv/bin/python`). Nothing is written into the
checkout: the WebUI runs with a temporary `--data-dir` whose `extensions/lora_train` links to
this repository, one checkpoint and a temporary Lora folder. A1111 gets the tiny SD1 model (with
its `.yaml`, which the WebUI loads too). A checkout with a `modules_forge` folder is Forge, which
gets its own CPU flags and a real-size SD1 checkpoint with random weights (Forge's loader knows
models only by their real shapes; LORA_TRAIN_REAL_SD1 names one already written, else it is written
here, 2.1 GB). `--skip-install` skips install.py, so the worker is this test's interpreter
(LORA_TRAIN_PYTHON). The tab's settings file keeps the runs small (64 px, 2 sample steps). See
docs/webui.md for how to run it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from lora_train.core.grid_image import GridSpec

ROOT = Path(__file__).resolve().parents[2]
WEBUI_DIR = os.environ.get("LORA_TRAIN_WEBUI_DIR")
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.skipif(not WEBUI_DIR, reason="set LORA_TRAIN_WEBUI_DIR to an "
                                                   "AUTOMATIC1111 or Forge checkout to run the WebUI integration test")]
COMMON_FLAGS = ["--skip-prepare-environment", "--skip-install", "--skip-torch-cuda-test", "--api",
                "--no-download-sd-model", "--skip-version-check"]
RESOLUTION = 64  # the resolution of the small-run defaults (conftest.py)
# Added to the tab's small-run defaults file: one epoch of two steps on the 8 images.
RUN_SIZE = "epochs: 1\nbatch_size: 4\n"
LORA_TABS = ("txt2img", "img2img")
JOB_TIMEOUT = 900
PAGE_TIMEOUT_MS = 180_000


def _is_forge(checkout: Path) -> bool:
    return (checkout / "modules_forge").is_dir()


def _cpu_flags(checkout: Path) -> list[str]:
    """Forge's gradio 4 serves files only under --data-dir unless told: its own scripts are in the checkout."""
    if _is_forge(checkout):
        return ["--always-cpu", "--all-in-fp32", "--gradio-allowed-path", str(checkout)]
    return ["--use-cpu", "all", "--no-half", "--precision", "full"]


def _checkpoint(forge: bool, models: Path, tiny_checkpoints) -> str:
    """Put the WebUI's one checkpoint into `models`; its file name."""
    if not forge:
        tiny = tiny_checkpoints("sd1")
        shutil.copy(tiny.single_file, models / "tiny-sd1.safetensors")
        shutil.copy(tiny.yaml, models / "tiny-sd1.yaml")
        return "tiny-sd1.safetensors"
    target = models / "real-size-sd1.safetensors"
    given = os.environ.get("LORA_TRAIN_REAL_SD1")
    if given:
        target.symlink_to(Path(given).resolve())
    else:
        from lora_train.fixtures.real_size import save_random_checkpoint

        save_random_checkpoint("sd1", target)
    return target.name


def _api(url: str, payload: dict | None = None, timeout: float = 900):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass(frozen=True)
class WebUI:
    url: str
    root: Path  # its --data-dir; the Lora folder is root / "Lora"
    forge: bool
    checkpoint: str  # the file name of its one checkpoint


@pytest.fixture(scope="module")
def webui(tmp_path_factory, tiny_checkpoints, small_run_defaults, free_port, running_server):
    root = tmp_path_factory.mktemp("webui")
    checkout = Path(WEBUI_DIR).resolve()
    forge = _is_forge(checkout)
    python = os.environ.get("LORA_TRAIN_WEBUI_PYTHON") or str(checkout / "venv" / "bin" / "python")
    (root / "extensions").mkdir()
    (root / "extensions" / "lora_train").symlink_to(ROOT, target_is_directory=True)
    models = root / "Stable-diffusion"
    models.mkdir()
    checkpoint = _checkpoint(forge, models, tiny_checkpoints)
    (root / "tab-defaults.yaml").write_text(small_run_defaults + RUN_SIZE)
    (root / "config.json").write_text(json.dumps({"lora_train_defaults_file": str(root / "tab-defaults.yaml")}))
    env = dict(os.environ, LORA_TRAIN_PYTHON=sys.executable, LORA_TRAIN_LOCK_DIR=str(root), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [python, "launch.py", *COMMON_FLAGS, *_cpu_flags(checkout), "--port", str(free_port),
               "--data-dir", str(root), "--ckpt-dir", str(models), "--lora-dir", str(root / "Lora")]
    url = f"http://127.0.0.1:{free_port}"
    # A1111 adds its API after the page is served; polling the API before that breaks its start (starlette 0.26)
    with running_server(command, checkout, env, root / "webui.log", f"{url}/sdapi/v1/sd-models", 600,
                        ready_log="Startup time:"):
        yield WebUI(url, root, forge, checkpoint)


def _render_strength_grid(page, loras: list[tuple[str, str]]) -> None:
    """The Stack & test section renders a grid of these (LoRA, weights) at 64 px through the WebUI's own txt2img."""
    page.locator(".tab-nav button", has_text="Train LoRA").first.click()  # the insert switched to txt2img
    page.locator("#lora_train_stack_section").get_by_text("6. Stack & test").first.click()
    page.click("#lora_train_stack_refresh")
    for index, (name, weights) in enumerate(loras, start=1):
        lora = page.locator(f"#lora_train_stack_lora_{index} input").first
        deadline = time.monotonic() + 60
        while lora.input_value() != name:  # the refresh answers later; until then the list lacks the LoRA
            assert time.monotonic() < deadline, f"the refreshed LoRA list never offered {name}"
            lora.fill(name)
            lora.press("Enter")
            lora.press("Tab")
            time.sleep(0.5)
        box = page.locator(f"#lora_train_stack_weights_{index} textarea, #lora_train_stack_weights_{index} input")
        box.first.fill(weights)
        box.first.press("Tab")
    for elem_id, value in (("lora_train_stack_prompt", "zq"), ("lora_train_stack_width", 64),
                           ("lora_train_stack_height", 64), ("lora_train_stack_steps", 4)):
        box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
        box.fill(str(value))
        box.press("Tab")
    page.click("#lora_train_stack_render")
    page.wait_for_function("document.querySelector('#lora_train_stack_note').innerText.includes('Saved the grid') "
                           "|| document.querySelector('#lora_train_stack_note .lora-train-error')", timeout=600_000)
    assert "Saved the grid" in page.inner_text("#lora_train_stack_note"), page.inner_text("#lora_train_stack_note")


def _newest_grid(webui: WebUI) -> tuple[GridSpec, Path]:
    """The parameters and the image of the last grid the Stack & test section saved."""
    params = max((webui.root / "outputs" / "lora_train" / "grids").glob("stack-*.json"),
                 key=lambda path: path.stat().st_mtime)
    return GridSpec(**json.loads(params.read_text())), params.with_suffix(".png")


def _txt2img(url: str, prompt: str) -> tuple[bytes, str]:
    """The image and the infotext of a small render."""
    payload = dict(prompt=prompt, seed=7, steps=4, width=RESOLUTION, height=RESOLUTION, cfg_scale=5,
                   sampler_name="Euler")
    answer = _api(f"{url}/sdapi/v1/txt2img", payload)
    return base64.b64decode(answer["images"][0]), json.loads(answer["info"])["infotexts"][0]


def _open_tab(browser, webui: WebUI):
    """A freshly loaded page on the Train LoRA tab, once the tab shows the WebUI's checkpoint."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(webui.url, timeout=PAGE_TIMEOUT_MS)
    # gradio 3 tab buttons have no role; Forge's page can take a minute to answer on a busy CPU
    page.locator(".tab-nav button", has_text="Train LoRA").first.click(timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector("#lora_train_start", timeout=PAGE_TIMEOUT_MS)
    # the WebUI loads its checkpoint after the UI is up; the tab follows within seconds
    stem = Path(webui.checkpoint).stem
    page.wait_for_function(f"document.querySelector('#lora_train_model_note').innerText.includes('{stem}')",
                           timeout=120_000)
    return page


def _start_training(page, training_images: Path) -> None:
    """Fill the form (the rest comes from the tab's defaults file) and press Start."""
    for elem_id, value in (("lora_train_data_dir", training_images), ("lora_train_trigger_word", "zq"),
                           ("lora_train_output_name", "webui_lora")):
        box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
        box.fill(str(value))
        box.press("Tab")
    page.click("#lora_train_start")
    page.wait_for_function("document.querySelector('#lora_train_action_note').innerText.includes('Started')")


def _wait_for_result(page, name: str) -> None:
    """Until the tab shows `name` saved; fails at once on a job error."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        for note in ("#lora_train_job_note", "#lora_train_action_note"):
            assert not page.locator(f"{note} .lora-train-error").count(), page.inner_text(note)
        if page.locator(f"#lora_train_result [data-lora-name='{name}']").count():
            return
        time.sleep(1)
    pytest.fail(f"{name} was not saved within {JOB_TIMEOUT} s: {page.inner_text('#lora_train_job_note')}")


def _wait_for_cards(page, name: str) -> None:
    """The LoRA's card in the txt2img and img2img Lora pages, with no click (built on the server, sent on refresh)."""
    for tab in LORA_TABS:
        page.wait_for_selector(f"#{tab}_lora_cards .card[data-name='{name}']", state="attached", timeout=30_000)


def _test_renders(page) -> list[list[int]]:
    """Press Test now (2 steps: a real-size model takes 20 s a step on a busy CPU) and wait for its two images;
    their sizes in pixels."""
    steps = page.locator("#lora_train_test_steps input").first
    steps.fill("2")
    steps.press("Tab")
    page.click("#lora_train_test")
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        sizes = page.eval_on_selector_all("#lora_train_test_images img",
                                          "images => images.filter(i => i.complete && i.naturalWidth)"
                                          ".map(i => [i.naturalWidth, i.naturalHeight])")
        note = page.inner_text("#lora_train_test_note")
        assert not page.locator("#lora_train_test_note .lora-train-error").count(), note
        if len(sizes) >= 2:
            return sizes
        time.sleep(1)
    pytest.fail(f"no test renders within {JOB_TIMEOUT} s: {note}; gallery: "
                f"{page.inner_html('#lora_train_test_images')[:2000]}")


def test_tab_trains_the_loaded_checkpoint_and_the_lora_shows_up_and_works(webui, browser, training_images):
    page = _open_tab(browser, webui)
    assert "SD1" in page.inner_text("#lora_train_model_note")
    assert webui.checkpoint in page.locator("#lora_train_base_model input").input_value()
    assert page.locator("#lora_train_resolution input").input_value() == str(RESOLUTION)  # the settings file
    _start_training(page, training_images)
    page.close()  # the job goes on; the Lora pages this WebUI built for the first page do not know the LoRA

    lora = webui.root / "Lora" / "webui_lora.safetensors"
    deadline = time.monotonic() + JOB_TIMEOUT
    while not lora.with_suffix(".preview.png").is_file() and time.monotonic() < deadline:
        time.sleep(2)
    page = _open_tab(browser, webui)
    try:
        _wait_for_result(page, "webui_lora")
        _wait_for_cards(page, "webui_lora")  # a freshly loaded page after the job
        assert _test_renders(page) == [[RESOLUTION, RESOLUTION]] * 2  # at the training resolution
        page.click("#lora_train_insert")  # gradio 4 runs the event's JavaScript after the click returns
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value"
                               ".includes('<lora:webui_lora:0.8>')", timeout=10_000)
        if not webui.forge:
            _render_strength_grid(page, [("webui_lora", "1")])
        page.locator(".tab-nav button", has_text="Train LoRA").first.click()  # Insert or the grid left it
        _start_training(page, training_images)  # the same name again, the page open this time
        _wait_for_result(page, "webui_lora_v2")
        _wait_for_cards(page, "webui_lora_v2")
    finally:
        page.close()
    sidecar = json.loads(lora.with_suffix(".json").read_text())  # what the Lora card shows
    assert (sidecar["sd version"], sidecar["activation text"], sidecar["preferred weight"]) == ("SD1", "zq", 0.8)
    assert {"webui_lora", "webui_lora_v2"} <= {item["name"] for item in _api(f"{webui.url}/sdapi/v1/loras")}
    plain, _ = _txt2img(webui.url, "zq")
    with_lora, infotext = _txt2img(webui.url, "zq <lora:webui_lora:1>")
    assert plain != with_lora
    if not webui.forge:
        grid, _ = _newest_grid(webui)
        assert grid.weights == [[0.0, 1.0]] and len(grid.infotexts) == 2
        assert "Lora hashes" not in grid.infotexts[0] and 'Lora hashes: "webui_lora: ' in grid.infotexts[1]
    assert "webui_lora" in infotext.split("Lora hashes:")[1], infotext


def test_interrupt_then_resume_gives_one_lora_with_one_card_and_the_whole_curve(webui, browser, training_images):
    """Interrupt, then Resume in the WebUI: the run finishes as the LoRA it started, one card in each Lora page."""
    from test_tab_browser import fill, interrupt_and_resume

    if webui.forge:
        pytest.skip("24 steps of a real-size SD1 take too long on a CPU")
    page = _open_tab(browser, webui)
    try:
        for elem_id, value in (("data_dir", training_images), ("trigger_word", "zq"), ("output_name", "webui_resumed"),
                               ("epochs", 6), ("batch_size", 2)):
            fill(page, f"lora_train_{elem_id}", value)
        interrupt_and_resume(page, webui.root / "Lora", "webui_resumed", 24, JOB_TIMEOUT)
        _wait_for_cards(page, "webui_resumed")
        for tab in LORA_TABS:
            names = page.eval_on_selector_all(f"#{tab}_lora_cards .card", "cards => cards.map(c => c.dataset.name)")
            assert [name for name in names if name.startswith("webui_resumed")] == ["webui_resumed"], names
    finally:
        page.close()


def test_a_chosen_older_caption_backup_is_the_one_restored(webui, browser, tmp_path):
    """Caption, edit a caption (backup A), Restore (backup B), choose A, wait 1.5 s, Restore: A is back, as the note
    says, with the WebUI's gradio running the section's 1 s update."""
    from test_caption_browser import caption_folder, restore_a_chosen_backup

    page = _open_tab(browser, webui)
    try:
        restore_a_chosen_backup(page, caption_folder(page, tmp_path, "to_restore"))
    finally:
        page.close()


def test_the_strength_grid_at_64_px_fits_long_names_in_its_labels(webui, browser, monkeypatch):
    """A 3 x 3 grid of two LoRAs, one with a long name, rendered by the WebUI at 64 px: the saved grid's label bands
    are the layout whose drawn text boxes, measured, lie inside their cells and read whole (test_grid_labels.py)."""
    import numpy as np
    from PIL import Image
    from test_grid_labels import assert_labels_fit, use_bitmap_font
    from tools_support import lora_file

    from lora_train.adapters.spec import LoraSpec
    from lora_train.core.grid_image import compose_grid, layout

    if webui.forge:
        pytest.skip("nine renders of a real-size SD1 take too long on a CPU")
    names = ["artist_a_v2_long_name", "artist_b"]
    for seed, name in enumerate(names):
        lora_file(webui.root / "Lora", name, "sd1", LoraSpec(rank=2, alpha=2.0), seed=seed)
    page = _open_tab(browser, webui)
    try:
        _render_strength_grid(page, [(names[0], "0, 0.5, 1"), (names[1], "0, 0.25, 0.75")])
    finally:
        page.close()
    spec, image = _newest_grid(webui)
    assert (spec.loras, spec.weights, spec.width, spec.height) == (names, [[0, 0.5, 1], [0, 0.25, 0.75]], 64, 64)
    assert all(f"{name}: " in spec.infotexts[-1] for name in names), spec.infotexts[-1]  # both LoRAs applied
    use_bitmap_font(monkeypatch)  # the font of A1111 1.10's Pillow 9.5, which drew the labels
    placed = layout(spec, 64, 64)
    with Image.open(image) as saved:
        drawn = np.asarray(saved.convert("RGB"))
    expected = np.asarray(compose_grid(spec, [Image.new("RGB", (64, 64), "white")] * 9))
    assert drawn.shape == expected.shape
    bands = np.ones(drawn.shape[:2], dtype=bool)
    bands[placed.top:, placed.left:] = False  # the cells
    assert (drawn[bands] == expected[bands]).all(), "the saved grid's labels are not the measured layout's"
    assert_labels_fit(spec, 64)


def test_llm_tab_trains_into_its_own_folder_and_answers_with_the_adapter(webui, browser, tiny_llm):
    """The LLM LoRA tab inside the WebUI: a model from models/LLM, the adapter in models/LLM-LoRA (never Lora)."""
    from test_tab_browser import choose, field, fill, text, wait_for
    from text_support import SEED, seed_rows

    url, root = webui.url, webui.root
    shutil.copytree(tiny_llm("llama"), root / "models" / "LLM" / "tiny-llama")
    shutil.copy(SEED, root / "qa.jsonl")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.locator(".tab-nav button", has_text="LLM LoRA").first.click()
        page.wait_for_selector("#lora_train_llm_start", timeout=60_000)
        page.click("#lora_train_llm_refresh")
        time.sleep(2)
        choose(page, "lora_train_llm_model_choice", "tiny-llama")
        page.click("#lora_train_llm_load")
        wait_for(lambda: "Loaded:" in text(page, "lora_train_llm_model_note"), "the model to load", 300, page)
        for elem_id, value in (("data_path", root / "qa.jsonl"), ("output_name", "webui_llm"), ("epochs", 15),
                               ("learning_rate", 0.01)):
            fill(page, f"lora_train_llm_{elem_id}", value)
        page.click("#lora_train_llm_start")
        wait_for(lambda: "Adapter saved" in text(page, "lora_train_llm_result"), "the adapter", 900, page)
        question, answer = seed_rows()[0]["instruction"], seed_rows()[0]["output"]
        fill(page, "lora_train_llm_prompt", question)
        page.click("#lora_train_llm_test")
        adapted = wait_for(lambda: field(page, "lora_train_llm_answer_adapted").input_value(), "the answers", 300,
                           page)
        assert adapted.strip() == answer and field(page, "lora_train_llm_answer_base").input_value() != adapted
    finally:
        page.close()
    assert (root / "models" / "LLM-LoRA" / "webui_llm" / "adapter_model.safetensors").is_file()
    assert not any("webui_llm" in path.name for path in (root / "Lora").glob("*"))


def test_caption_section_captions_a_folder_in_the_worker(webui, browser, tmp_path):
    """The Caption section inside the WebUI: the tiny tagger runs in the worker, the captions land beside the images
    and the gallery lists them (written for A1111 1.10's gradio 3 and Forge's gradio 4). The steps wait for this
    folder's captions: a fresh page shows the last caption job's progress, "done" from the start."""
    from test_caption_browser import caption_folder

    page = _open_tab(browser, webui)
    try:
        folder = caption_folder(page, tmp_path, "to_caption")
    finally:
        page.close()
    assert (folder / "red.txt").read_text().strip() == "zq, red background, ^_^"
    assert (folder / "green.txt").read_text().strip() == "zq, hatsune miku, ^_^"
