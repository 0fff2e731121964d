"""The tab's Caption section in chromium: caption a folder with the tiny tagger in the worker, edit one caption,
replace a tag everywhere, restore a backup; the files on disk follow each step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lora_train.fixtures.captioners import build_tagger, image_folder
from test_tab_browser import choose, field, fill, messages, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def caption_status(page) -> str:
    bar = page.locator("#lora_train_caption_progress .lora-train-progress")
    return bar.get_attribute("data-status") if bar.count() else ""


def read(folder: Path, name: str) -> str:
    return (folder / f"{name}.txt").read_text().strip()


def test_caption_edit_bulk_replace_and_restore(page, workspace):
    folder = image_folder(workspace / "to_caption")
    tagger = build_tagger(workspace / "captioners" / "tiny-tagger")
    fill(page, "lora_train_data_dir", folder)
    fill(page, "lora_train_trigger_word", "zq")
    choose(page, "lora_train_caption_model", str(tagger))
    page.click("#lora_train_caption_run")
    wait_for(lambda: caption_status(page) in ("done", "failed"), "captioning to end", 120, page)
    assert caption_status(page) == "done", page.inner_text("#lora_train_caption_note")
    wait_for(lambda: "3 new captions written" in messages(page, "lora_train_caption_note"), "the summary", 30, page)
    assert read(folder, "red") == "zq, red background, ^_^"
    wait_for(lambda: page.locator("#lora_train_caption_gallery img").count() >= 3, "the caption gallery", 30, page)
    assert "hatsune miku" in page.inner_text("#lora_train_caption_counts")

    def pick_red() -> bool:  # a list update from the page's 1 s tick may land while typing: choose again then
        choose(page, "lora_train_caption_image", "red.png")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if field(page, "lora_train_caption_text").input_value() == "zq, red background, ^_^":
                return True
            time.sleep(0.25)
        return False

    wait_for(pick_red, "the chosen caption", 60, page)
    fill(page, "lora_train_caption_text", "zq, a red square")
    page.click("#lora_train_caption_save")
    wait_for(lambda: "Saved the caption of red.png" in messages(page, "lora_train_caption_note"), "the save", 30, page)
    assert read(folder, "red") == "zq, a red square"

    fill(page, "lora_train_caption_tag", "^_^")
    fill(page, "lora_train_caption_replacement", "smile")
    page.click("#lora_train_caption_replace")
    wait_for(lambda: "2 caption(s) changed" in messages(page, "lora_train_caption_note"), "the replace", 30, page)
    assert read(folder, "blue") == "zq, blue background, smile"
    wait_for(lambda: "smile" in page.inner_text("#lora_train_caption_counts"), "the new tag counts", 30, page)

    page.click("#lora_train_caption_restore")  # the newest backup is chosen after each change
    wait_for(lambda: "Restored" in messages(page, "lora_train_caption_note"), "the restore", 30, page)
    assert read(folder, "blue") == "zq, blue background, ^_^" and read(folder, "green") == "zq, hatsune miku, ^_^"
    assert "Traceback" not in page.inner_text("body")
