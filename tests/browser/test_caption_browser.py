"""The tab's Caption section in chromium: caption a folder with the tiny tagger in the worker, edit one caption,
replace a tag everywhere, restore a backup (the one chosen, with the page's 1 s update running meanwhile),
pick an image by its thumbnail; the files on disk follow each step."""

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


def caption_folder(page, workspace: Path, name: str) -> Path:
    """A folder of three images captioned in the page with a tiny tagger; their thumbnails listed."""
    folder = image_folder(workspace / name)
    tagger = build_tagger(workspace / "captioners" / f"tagger-{name}")
    fill(page, "lora_train_data_dir", folder)
    fill(page, "lora_train_trigger_word", "zq")
    choose(page, "lora_train_caption_model", str(tagger))
    page.click("#lora_train_caption_run")
    wait_for(lambda: (folder / "red.txt").is_file(), "the captions", 120, page)  # the job of this test runs
    wait_for(lambda: caption_status(page) == "done" and "3 new captions written" in
             messages(page, "lora_train_caption_note"), "the captioning's end", 120, page)
    wait_for(lambda: page.locator("#lora_train_caption_gallery .thumbnail-item").count() >= 3, "the gallery", 30,
             page)
    return folder


def test_caption_edit_bulk_replace_and_restore(page, workspace):
    folder = caption_folder(page, workspace, "to_caption")
    assert read(folder, "red") == "zq, red background, ^_^"
    assert "hatsune miku" in page.inner_text("#lora_train_caption_counts")

    choose(page, "lora_train_caption_image", "red.png")
    wait_for(lambda: field(page, "lora_train_caption_text").input_value() == "zq, red background, ^_^",
             "the chosen caption", 30, page)
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


def test_the_chosen_backup_is_the_one_restored(page, workspace):
    """The steps of issue 20: caption a folder, edit and save one caption (backup A), Load captions, Restore
    (which makes backup B), choose A, wait 1.5 s, Restore: A is restored, as the note says. Under gradio 3 the
    once-a-second update used to list the folder again each second, putting the choice back on B."""
    restore_a_chosen_backup(page, caption_folder(page, workspace, "to_restore"))


def restore_a_chosen_backup(page, folder: Path) -> None:
    """In a freshly captioned `folder`: edit red.png's caption (backup A), Load captions, Restore (backup B), choose
    A, wait 1.5 s, Restore: A's captions are back and the note names A."""
    choose(page, "lora_train_caption_image", "red.png")
    wait_for(lambda: field(page, "lora_train_caption_text").input_value() == "zq, red background, ^_^",
             "its caption", 30, page)
    fill(page, "lora_train_caption_text", "zq, a red square")
    page.click("#lora_train_caption_save")
    saved = wait_for(lambda: "Saved the caption of red.png" in messages(page, "lora_train_caption_note") and
                     messages(page, "lora_train_caption_note"), "the save", 30, page)
    assert read(folder, "red") == "zq, a red square"
    backup_a = saved.split("are backup ")[1].rstrip(".")
    page.click("#lora_train_caption_load")
    time.sleep(1.2)  # backups are named by the second
    wait_for(lambda: field(page, "lora_train_caption_backup").input_value() == backup_a, "backup A chosen", 30, page)
    page.click("#lora_train_caption_restore")
    restored = wait_for(lambda: "Restored backup" in messages(page, "lora_train_caption_note") and
                        messages(page, "lora_train_caption_note"), "the first restore", 30, page)
    assert f"Restored backup {backup_a}: 1 caption(s) put back" in restored and read(folder, "red") == \
        "zq, red background, ^_^"
    backup_b = restored.split("now backup ")[1].rstrip(".")
    assert field(page, "lora_train_caption_backup").input_value() == backup_b

    choose(page, "lora_train_caption_backup", backup_a)
    time.sleep(1.5)
    assert field(page, "lora_train_caption_backup").input_value() == backup_a
    assert messages(page, "lora_train_caption_note") == restored  # the note stays until something happens
    page.click("#lora_train_caption_restore")
    wait_for(lambda: f"Backup {backup_a}" in messages(page, "lora_train_caption_note"), "the second restore", 30,
             page)
    assert read(folder, "red") == "zq, red background, ^_^"  # B would have put "zq, a red square" back
    assert sorted(path.name for path in (folder / ".caption_backups").iterdir()) == sorted([backup_a, backup_b])


def test_a_click_on_a_thumbnail_picks_its_image_for_editing(page, workspace):
    caption_folder(page, workspace, "to_click")
    page.locator("#lora_train_caption_gallery .thumbnail-item").nth(1).click()  # blue, green, red
    wait_for(lambda: field(page, "lora_train_caption_image").input_value() == "green.png", "the clicked image", 30,
             page)
    wait_for(lambda: field(page, "lora_train_caption_text").input_value() == "zq, hatsune miku, ^_^",
             "its caption", 30, page)
