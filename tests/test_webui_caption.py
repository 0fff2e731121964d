"""The tab's Caption section without a browser: a captioning job in the worker, then edits, bulk tag changes,
tag counts, a restored backup and the 75-token check, as the buttons do them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lora_train.fixtures.captioners import build_tagger, image_folder
from lora_train.core.errors import UserError
from lora_train.webui.caption_section import CaptionSection
from lora_train.webui.controller import TabController
from lora_train.webui.host import TabSettings
from lora_train.webui.standalone_host import StandaloneHost
from lora_train.webui.paths import PathPolicy
from lora_train.webui.runner import JobRunner


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

    gallery, names, counts, backups, _ = section.listing(str(folder))
    assert len(gallery) == 3 and names["choices"] == ["blue.png", "green.png", "red.png"]
    assert "<td>zkw</td><td>3</td>" in counts and "<td>^_^</td><td>3</td>" in counts
    assert section.caption_of(str(folder), "red.png")[0] == "zkw, red background, ^_^"

    section.save(str(folder), "red.png", "zkw, a red square")
    assert texts(folder)["red"] == "zkw, a red square"
    *_, note = section.bulk_replace(str(folder), "^_^", "smile")
    assert "2 caption(s) changed" in note
    assert texts(folder)["blue"] == "zkw, blue background, smile"
    section.bulk_remove(str(folder), "ZKW", "")
    section.bulk_add(str(folder), "solo", "")
    assert texts(folder)["green"] == "hatsune miku, smile, solo"

    *_, backups, _ = section.listing(str(folder))
    assert backups["choices"] and backups["value"] == backups["choices"][-1]
    first = backups["choices"][0]
    *_, note = section.restore(str(folder), first)
    assert "Restored" in note and texts(folder)["red"] == "zkw, red background, ^_^"

    assert "Every caption fits" in section.check_length(str(folder))
    (folder / "blue.txt").write_text(", ".join(f"tag{i}" for i in range(60)))
    warning = section.check_length(str(folder))
    assert "1 caption(s) exceed 75 tokens" in warning and "blue.png" in warning


def test_bad_section_inputs_are_messages(tmp_path, section):
    with pytest.raises(UserError, match="no path given"):
        section.start("", "", "tagger", "", "skip", 0.35, 0.85, "", "")
    with pytest.raises(UserError, match="Choose the image"):
        section.save(str(tmp_path), None, "x")
    with pytest.raises(UserError, match="Which tag"):
        section.bulk_add(str(tmp_path), " ", "")
    with pytest.raises(UserError, match="not an image in"):
        section.save(str(tmp_path), "../outside.png", "x")
