"""Writing captions: skip / overwrite / append / prepend, backups before every change, restore, metadata.csv."""

from __future__ import annotations

from datetime import datetime

import pytest

from lora_train.caption.writer import BACKUP_FOLDER, CaptionWriter, WriteOptions, list_backups, merge, restore_backup
from lora_train.core.errors import UserError
from lora_train.data.metadata_csv import read_metadata_csv

FIRST = datetime(2026, 1, 2, 3, 4, 5)
SECOND = datetime(2026, 1, 2, 3, 4, 6)


def folder_with(tmp_path, captions: dict[str, str | None]):
    for name, caption in captions.items():
        (tmp_path / f"{name}.png").write_bytes(b"")
        if caption is not None:
            (tmp_path / f"{name}.txt").write_text(caption, encoding="utf-8")
    return tmp_path


def write_all(folder, new: dict[str, str], when=FIRST, **options):
    writer = CaptionWriter(folder, WriteOptions(**options), when)
    for name, caption in new.items():
        writer.write(folder / f"{name}.png", caption)
    return writer.finish()


def text(folder, name):
    return (folder / f"{name}.txt").read_text(encoding="utf-8")


def test_merge_rules():
    assert merge("old, tags", "new", "skip") is None
    assert merge("", "new", "skip") == "new"
    assert merge("old, tags", "new, old", "overwrite") == "new, old"
    assert merge("old, tags", "new, OLD", "append") == "old, tags, new"
    assert merge("old, tags", "new, tags", "prepend") == "new, old, tags"
    assert merge("old", "old", "append") == "old"
    assert merge("old", "new", "append", trigger_word="zkw") == "zkw, old, new"


def test_skip_keeps_existing_captions_and_writes_missing_ones(tmp_path):
    folder = folder_with(tmp_path, {"a": "mine", "b": None, "c": "  "})
    report = write_all(folder, {"a": "x", "b": "y", "c": "z"})
    assert (text(folder, "a"), text(folder, "b"), text(folder, "c")) == ("mine", "y\n", "z\n")
    assert report.kept == ["a.txt"] and report.written == ["b.txt"] and report.changed == ["c.txt"]
    assert (folder / BACKUP_FOLDER / "20260102-030405" / "c.txt").read_text() == "  "  # even blank ones


@pytest.mark.parametrize("mode, expected", [("overwrite", "new, tag\n"), ("append", "mine, old, new\n"),
                                            ("prepend", "new, mine, old\n")])
def test_changes_back_up_the_old_caption_first(tmp_path, mode, expected):
    folder = folder_with(tmp_path, {"a": "mine, old", "b": None})
    report = write_all(folder, {"a": "new, tag" if mode == "overwrite" else "new, old", "b": "fresh"}, mode=mode)
    assert text(folder, "a") == expected and text(folder, "b") == "fresh\n"
    assert report.changed == ["a.txt"] and report.written == ["b.txt"]
    backup = folder / BACKUP_FOLDER / "20260102-030405"
    assert report.backup_dir == backup and sorted(p.name for p in backup.iterdir()) == ["a.txt"]
    assert (backup / "a.txt").read_text() == "mine, old"


def test_unchanged_caption_makes_no_backup(tmp_path):
    folder = folder_with(tmp_path, {"a": "same"})
    report = write_all(folder, {"a": "same"}, mode="overwrite")
    assert report.kept == ["a.txt"] and report.backup_dir is None and not (folder / BACKUP_FOLDER).exists()


def test_trigger_word_and_other_extension(tmp_path):
    folder = folder_with(tmp_path, {"a": None})
    write_all(folder, {"a": "red"}, extension=".caption", trigger_word="zkw")
    assert (folder / "a.caption").read_text() == "zkw, red\n" and not (folder / "a.txt").exists()


def test_restore_puts_the_backup_back_and_saves_what_it_replaces(tmp_path):
    folder = folder_with(tmp_path, {"a": "original", "b": "second"})
    write_all(folder, {"a": "tagged", "b": "tagged too"}, mode="overwrite")
    assert list_backups(folder) == ["20260102-030405"]
    restored, previous = restore_backup(folder, "latest", SECOND)
    assert sorted(restored) == ["a.txt", "b.txt"]
    assert (text(folder, "a"), text(folder, "b")) == ("original", "second")
    assert (previous / "a.txt").read_text() == "tagged\n"
    assert list_backups(folder) == ["20260102-030405", "20260102-030406-before-restore"]
    with pytest.raises(UserError, match="No caption backup 'nope'"):
        restore_backup(folder, "nope", SECOND)


def test_restore_without_backups_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="has no caption backups"):
        restore_backup(tmp_path, "latest", FIRST)


def test_metadata_csv_is_written_read_back_and_backed_up(tmp_path):
    folder = folder_with(tmp_path, {"a": None, "b": None})
    (folder / "sub").mkdir()
    (folder / "sub" / "c.png").write_bytes(b"")
    csv_path = folder / "metadata.csv"
    writer = CaptionWriter(folder, WriteOptions(write_txt=False, metadata_csv=csv_path, trigger_word="zkw"), FIRST)
    for name, caption in (("a.png", 'red, "quoted"'), ("sub/c.png", "blue")):
        writer.write(folder / name, caption)
    assert writer.finish().csv_rows == 2 and not (folder / "a.txt").exists()
    rows = read_metadata_csv(csv_path)[0]
    assert [(r.filename, r.prompt) for r in rows] == [("a.png", 'zkw, red, "quoted"'), ("sub/c.png", "zkw, blue")]
    old = csv_path.read_bytes()
    writer = CaptionWriter(folder, WriteOptions(mode="append", write_txt=False, metadata_csv=csv_path), SECOND)
    writer.write(folder / "a.png", "green")
    writer.write(folder / "b.png", "new")
    writer.finish()
    rows = {r.filename: r.prompt for r in read_metadata_csv(csv_path)[0]}
    assert rows == {"a.png": 'zkw, red, "quoted", green', "sub/c.png": "zkw, blue", "b.png": "new"}
    assert (folder / BACKUP_FOLDER / "20260102-030406" / "metadata.csv").read_bytes() == old
