"""The tab's Caption section without a browser: a captioning job in the worker, then edits, bulk tag changes,
tag counts, a restored backup and the 75-token check, as the buttons do them."""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
import pytest

from lora_train.fixtures.captioners import build_tagger, image_folder
from lora_train.core.errors import UserError
from lora_train.webui.image_tab.caption_section import CaptionSection
from lora_train.webui.image_tab.controller import TabController
from lora_train.webui.hosts.host import TabSettings
from lora_train.webui.hosts.standalone_host import StandaloneHost
from lora_train.webui.hosts.paths import PathPolicy
from lora_train.webui.worker.runner import JobRunner, JobState


@pytest.fixture
def section(tmp_path):
    settings = TabSettings(tmp_path / "loras", tmp_path / "runs")
    host = StandaloneHost(None, settings, PathPolicy(False, []))
    return CaptionSection(TabController(host, JobRunner(), python_fallback=sys.executable), JobRunner())


def texts(folder: Path) -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in sorted(folder.glob("*.txt"))}


@pytest.mark.slow
def test_caption_run_edit_bulk_restore_and_length_check(tmp_path, section):
    folder = image_folder(tmp_path / "images")
    tagger = build_tagger(tmp_path / "tagger")
    note = section.start(str(folder), "zkw", "tagger", str(tagger), "skip", 0.35, 0.85, "", "")
    assert "Captioning" in note
    assert section.runner.wait(120)
    state = section.runner.snapshot()
    assert state.status == "done", state.messages
    assert texts(folder) == {"blue": "zkw, blue background, ^_^", "green": "zkw, hatsune miku, ^_^",
                             "red": "zkw, red background, ^_^"}

    page: dict = {}
    gallery, names, counts, backups, _ = section.listing(str(folder), page)
    assert len(gallery) == 3 and names["choices"] == ["blue.png", "green.png", "red.png"]
    assert "<td>zkw</td><td>3</td>" in counts and "<td>^_^</td><td>3</td>" in counts
    assert section.caption_of(str(folder), "red.png")[0] == "zkw, red background, ^_^"

    section.save(str(folder), page, "red.png", "zkw, a red square")
    assert texts(folder)["red"] == "zkw, a red square"
    *_, note = section.bulk_replace(str(folder), page, "^_^", "smile")
    assert "2 caption(s) changed" in note
    assert texts(folder)["blue"] == "zkw, blue background, smile"
    section.bulk_remove(str(folder), page, "ZKW", "")
    section.bulk_add(str(folder), page, "solo", "")
    assert texts(folder)["green"] == "hatsune miku, smile, solo"

    *_, backups, _ = section.listing(str(folder), {})  # another page: the newest backup is chosen
    assert backups["choices"] and backups["value"] == backups["choices"][-1]
    first = backups["choices"][0]
    *_, note = section.restore(str(folder), page, first)
    assert f"Restored backup {first}" in note and texts(folder)["red"] == "zkw, red background, ^_^"

    assert "Every caption fits" in section.check_length(str(folder))
    (folder / "blue.txt").write_text(", ".join(f"tag{i}" for i in range(60)))
    warning = section.check_length(str(folder))
    assert "1 caption(s) exceed 75 tokens" in warning and "blue.png" in warning


def test_bad_section_inputs_are_messages(tmp_path, section):
    with pytest.raises(UserError, match="no path given"):
        section.start("", "", "tagger", "", "skip", 0.35, 0.85, "", "")
    with pytest.raises(UserError, match="Choose the image"):
        section.save(str(tmp_path), {}, None, "x")
    with pytest.raises(UserError, match="Which tag"):
        section.bulk_add(str(tmp_path), {}, " ", "")
    with pytest.raises(UserError, match="not an image in"):
        section.save(str(tmp_path), {}, "../outside.png", "x")


class EndedRunner:
    """A stand-in runner whose latest job is a captioning run of `folder` that has ended."""

    def __init__(self, folder: Path):
        self.state = JobState("captioning images", folder, {"train_data_dir": str(folder)}, 1, "done",
                              summary=f"{folder}: 3 captions written", ended=True)

    def snapshot(self) -> JobState:
        return self.state


def unchanged(update) -> bool:
    return update == gr.update()


def test_the_periodic_update_lists_only_what_changed_so_a_chosen_backup_is_restored(tmp_path, section):
    """The issue's steps: edit and save one caption (backup A), Load captions, Restore (backup B, made of what
    the restore replaced), choose A, let the once-a-second update run, Restore: A comes back."""
    folder = image_folder(tmp_path / "images")
    for name in ("red", "green", "blue"):
        (folder / f"{name}.txt").write_text(f"zkw, {name}")
    section.runner = EndedRunner(folder)
    page: dict = {}
    first = section.tick(page)  # a page opened after the job: its folder listed once
    assert len(first[1]) == 3 and "3 captions written" in first[5]
    assert all(unchanged(update) for update in section.tick(page))  # nothing changed: nothing sent

    *_, a_note = section.save(str(folder), page, "red.png", "zkw, a red square")
    backup_a = a_note.split("are backup ")[1].split(".")[0]
    section.listing(str(folder), page)
    *_, backups, b_note = section.restore(str(folder), page, backup_a)
    backup_b = backups["value"]
    assert backup_b.endswith("-before-restore") and f"now backup {backup_b}" in b_note
    assert f"Restored backup {backup_a}: 1 caption(s) put back" in b_note and texts(folder)["red"] == "zkw, red"
    for _ in range(3):  # the user chooses A meanwhile; the updates leave the list, its choice and the note alone
        assert all(unchanged(update) for update in section.tick(page))
    *_, note = section.restore(str(folder), page, backup_a)
    assert texts(folder)["red"] == "zkw, red"  # restoring B would have put "zkw, a red square" back
    assert f"Backup {backup_a}: every caption already matches it." in note

    (folder / "green.txt").write_text("zkw, green, edited in another program")
    progress, gallery, names, counts, backup, note = section.tick(page)  # the folder changed: listed again
    assert len(gallery) == 3 and "edited in another program" in counts
    assert unchanged(backup) and unchanged(note)  # no new backup: the choice and the note stay
    assert all(unchanged(update) for update in section.tick(page))


def test_a_click_on_a_thumbnail_picks_its_image_for_editing(tmp_path, section):
    folder = image_folder(tmp_path / "images")
    (folder / "green.txt").write_text("zkw, green square")
    page: dict = {}
    gallery, *_ = section.listing(str(folder), page)
    assert [caption.split(":")[0] for _, caption in gallery] == ["blue.png", "green.png", "red.png"]
    image, caption, _ = section.pick(page, gr.SelectData(None, {"index": 1, "value": None}))
    assert image["value"] == "green.png" and caption == "zkw, green square"
