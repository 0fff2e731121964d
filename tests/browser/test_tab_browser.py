"""The Train LoRA tab in chromium, training the tiny SD1 model with the real engine.

What a user does: point the tab at a dataset, check it, start; watch the progress bar move,
the loss chart and a sample appear; find the LoRA with its sidecar and preview in the Lora
folder; the note that said "Started" or "Stopping" then says how the job ended. Also: a second job
while one runs is refused, a reloaded page shows the running job and its form, Interrupt saves a
partial LoRA that Resume finishes as the same LoRA (one card, the whole loss curve), and bad inputs
are messages in the page, never tracebacks. Set LORA_TRAIN_SCREENSHOT=docs/images/tab.png
to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]
JOB_TIMEOUT = 180


def field(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def fill(page, elem_id: str, value) -> None:
    box = field(page, elem_id)
    box.fill(str(value))
    box.press("Tab")


def choose(page, elem_id: str, value: str) -> None:
    box = field(page, elem_id)
    box.fill(value)
    box.press("Enter")
    box.press("Tab")


def text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").first.inner_text()  # gradio 3 repeats the id on an inner div


def messages(page, elem_id: str, level: str = "") -> str:
    """The text of the tab's message boxes in a component (not gradio's own progress overlay)."""
    boxes = page.locator(f"#{elem_id} .lora-train-message" + (f".lora-train-{level}" if level else ""))
    return "\n".join(boxes.all_inner_texts())


def wait_for(check: Callable[[], object], what: str, timeout: float = JOB_TIMEOUT, page=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}" + (f"; page says: {page.inner_text('body')[-2000:]}" if page else ""))


def progress_step(page) -> tuple[str, int, int]:
    bar = page.locator("#lora_train_progress .lora-train-progress")
    if not bar.count():
        return "", 0, 0
    return (bar.get_attribute("data-status"), int(bar.get_attribute("data-step")),
            int(bar.get_attribute("data-total")))


def fill_job(page, workspace: Path, name: str, epochs: int, batch_size: int = 2) -> None:
    choose(page, "lora_train_base_model", "tiny-sd1.safetensors")
    fill(page, "lora_train_data_dir", workspace / "data")
    fill(page, "lora_train_trigger_word", "zq")
    fill(page, "lora_train_output_name", name)
    fill(page, "lora_train_epochs", epochs)
    fill(page, "lora_train_batch_size", batch_size)


def wait_until_ended(page, timeout: float = JOB_TIMEOUT) -> str:
    """The result once the job and the host's follow-up are over (the bar shows "finishing" until then)."""
    wait_for(lambda: progress_step(page)[0] in ("done", "interrupted", "failed"), "the job to end", timeout, page)
    return text(page, "lora_train_result")


def save_screenshot(page, tmp_path: Path) -> None:
    page.keyboard.press("Escape")  # close any open dropdown list
    page.mouse.click(5, 5)
    shot = tmp_path / "tab.png"
    page.screenshot(path=str(shot), full_page=True)
    target = os.environ.get("LORA_TRAIN_SCREENSHOT")
    if target:
        with Image.open(shot) as image:
            small = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
            small.quantize(colors=128).save(target, optimize=True)


def test_training_shows_progress_loss_samples_and_saves_the_lora(page, workspace, tmp_path):
    fill_job(page, workspace, "browser_lora", epochs=12, batch_size=1)  # 96 steps: several 1 s ticks
    wait_for(lambda: field(page, "lora_train_config_path").input_value() == str(workspace / "runs" /
                                                                               "browser_lora.yaml"),
             "the config file path to follow the LoRA name", 30, page)
    page.click("#lora_train_scan")
    wait_for(lambda: "8 images" in messages(page, "lora_train_dataset_note"), "the dataset check", 60, page)
    wait_for(lambda: page.locator("#lora_train_dataset_gallery img").count() >= 8, "the dataset previews", 30)

    page.click("#lora_train_start")
    wait_for(lambda: "Started training browser_lora" in messages(page, "lora_train_action_note"), "the start", 30,
             page)
    seen = set()
    wait_for(lambda: seen.add(progress_step(page)[1]) or len(seen) >= 4 or progress_step(page)[0] == "done",
             "the progress bar to move", page=page)
    wait_for(lambda: page.locator("#lora_train_chart svg polyline.lora-train-loss-smoothed").count(), "the loss chart",
             page=page)
    axis_labels = page.locator("#lora_train_chart .lora-train-axis-label").all_text_contents()
    assert axis_labels == ["step", "loss"] and page.locator("#lora_train_chart polyline.lora-train-loss-raw").count()
    wait_for(lambda: page.locator("#lora_train_samples img").count(), "a sample image", page=page)
    result = wait_until_ended(page)

    status, step, total = progress_step(page)
    assert (status, step) == ("done", total) and total == 96
    assert len({s for s in seen if 0 < s < total}) >= 2, f"progress seen: {sorted(seen)}"
    assert "LoRA saved" in result and result.count("✓") == 3
    loras = workspace / "loras"
    assert {p.name for p in loras.iterdir()} >= {"browser_lora.safetensors", "browser_lora.json",
                                                  "browser_lora.preview.png"}
    assert field(page, "lora_train_tag").input_value() == "<lora:browser_lora:0.8>"
    ended = wait_for(lambda: "browser_lora ended: Saved" in messages(page, "lora_train_action_note") and
                     messages(page, "lora_train_action_note"), "the note to say how the job ended", 30, page)
    assert "Started" not in ended  # the note says what is true now
    assert "Traceback" not in page.inner_text("body")
    save_screenshot(page, tmp_path)

    fill(page, "lora_train_epochs", 1)  # the same name again: a run of its own, named like its file
    page.click("#lora_train_start")
    started = wait_for(lambda: "browser_lora_v2" in messages(page, "lora_train_action_note") and
                       messages(page, "lora_train_action_note"), "the second start", 30, page)
    assert f"Started training browser_lora_v2 on tiny-sd1.safetensors; files go to " \
        f"{workspace / 'runs' / 'browser_lora_v2'}" in started
    wait_for(lambda: "browser_lora_v2.safetensors" in text(page, "lora_train_result"), "the second LoRA", page=page)
    assert (workspace / "runs" / "browser_lora_v2" / "job.yaml").is_file()
    assert "browser_lora_v2" not in (workspace / "runs" / "browser_lora" / "job.yaml").read_text()


def test_a_second_job_is_refused_and_interrupt_saves_a_partial_lora(page, workspace):
    fill_job(page, workspace, "stopped_lora", epochs=300)
    page.click("#lora_train_start")
    wait_for(lambda: progress_step(page)[0] == "running" and progress_step(page)[1] >= 2, "training steps",
             page=page)
    page.click("#lora_train_start")
    wait_for(lambda: "already running: stopped_lora" in messages(page, "lora_train_action_note", "error"),
             "the refusal", 30, page)
    before = progress_step(page)[1]
    page.reload()  # the job runs on in the server; the reloaded page shows it again, and its form
    wait_for(lambda: progress_step(page)[0] == "running" and progress_step(page)[1] > before,
             "the running job after a reload", page=page)
    wait_for(lambda: field(page, "lora_train_output_name").input_value() == "stopped_lora", "the job's form", 30,
             page)
    assert field(page, "lora_train_data_dir").input_value() == str(workspace / "data")
    assert field(page, "lora_train_epochs").input_value() == "300" and field(
        page, "lora_train_trigger_word").input_value() == "zq"
    page.click("#lora_train_stop")
    wait_for(lambda: "Stopping" in messages(page, "lora_train_action_note"), "the stop request", 30, page)
    result = wait_until_ended(page)
    assert "Partial LoRA saved (interrupted)" in result
    ended = wait_for(lambda: "stopped_lora ended: Stopped at step" in messages(page, "lora_train_action_note") and
                     messages(page, "lora_train_action_note"), "the note to say how the job ended", 30, page)
    assert "Stopping" not in ended  # the note says what is true now
    status, step, total = progress_step(page)
    assert status == "interrupted" and 2 <= step < total
    assert (workspace / "loras" / "stopped_lora.safetensors").is_file()


def test_resume_after_interrupt_finishes_the_same_lora_with_one_card_and_the_whole_chart(page, workspace):
    fill_job(page, workspace, "resumed_lora", epochs=12)
    interrupt_and_resume(page, workspace / "loras", "resumed_lora", 48)


def interrupt_and_resume(page, loras: Path, name: str, total_steps: int, timeout: float = JOB_TIMEOUT) -> None:
    """Start the job filled in, Interrupt it after 2 steps, then Resume: one run, so one LoRA `name` (one card's
    files in `loras`) and a chart of its whole curve; each part of the job within `timeout` s."""
    page.click("#lora_train_start")
    wait_for(lambda: progress_step(page)[0] == "running" and progress_step(page)[1] >= 2, "training steps",
             timeout, page)
    page.click("#lora_train_stop")
    partial = wait_until_ended(page, timeout)
    status, stopped_at, total = progress_step(page)
    assert status == "interrupted" and stopped_at < total == total_steps
    assert "Partial LoRA saved" in partial and "✗" not in partial  # no missing preview listed

    page.click("#lora_train_resume")
    wait_for(lambda: f"Resuming training {name}" in messages(page, "lora_train_action_note"), "the resume", 30,
             page)
    wait_for(lambda: progress_step(page)[0] in ("running", "done") and progress_step(page)[1] > stopped_at,
             "the resumed job", timeout, page)
    result = wait_until_ended(page, timeout)
    assert progress_step(page) == ("done", total_steps, total_steps)
    assert "LoRA saved" in result and f"{name}.safetensors" in result and f"{name}_v2" not in result
    assert sorted(path.name for path in loras.glob(f"{name}*")) == [
        f"{name}.json", f"{name}.preview.png", f"{name}.safetensors"]  # one run, one card
    assert f"(steps 1-{total_steps})" in text(page, "lora_train_chart"), "the chart shows the whole curve"


def test_bad_inputs_are_messages_not_tracebacks(page, workspace):
    fill_job(page, workspace, "bad_lora", epochs=1)
    fill(page, "lora_train_data_dir", workspace / "empty")
    page.click("#lora_train_scan")
    note = wait_for(lambda: messages(page, "lora_train_dataset_note", "error"), "the dataset message", 30, page)
    assert "No images in" in note and str(workspace / "empty") in note

    fill(page, "lora_train_data_dir", workspace / "data")
    choose(page, "lora_train_base_model", "broken.safetensors")
    page.click("#lora_train_start")
    message = wait_for(lambda: messages(page, "lora_train_job_note", "error"), "the engine's error", page=page)
    assert "broken.safetensors is not a model checkpoint" in message
    wait_until_ended(page)
    assert progress_step(page)[0] == "failed"
    body = page.inner_text("body")
    assert "Traceback" not in body and 'File "' not in body


def test_the_auto_preset_fills_the_form_from_the_dataset_with_its_reasons(page, workspace):
    fill_job(page, workspace, "auto_lora", epochs=77, batch_size=3)
    choose(page, "lora_train_preset", "Auto (from the dataset)")
    note = wait_for(lambda: messages(page, "lora_train_action_note", "success"), "the auto preset's note", 60, page)
    assert "Auto preset" in note
    reasons = messages(page, "lora_train_action_note", "info")
    assert "images:" in reasons and "epochs =" in reasons and "kohya" in reasons
    epochs = int(field(page, "lora_train_epochs").input_value())
    assert epochs != 77 and f"epochs = {epochs}:" in reasons  # the form shows what the note says, editable
    fill(page, "lora_train_epochs", 2)
    assert field(page, "lora_train_epochs").input_value() == "2"
