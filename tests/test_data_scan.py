"""Scanning: folder and metadata.csv layouts, N_name repeats, kohya metadata values, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_helpers import png_header_only, save_image

from lora_train.data.scan import scan_dataset
from lora_train.core.errors import UserError


def _warning_about(index, name: str) -> str:
    found = [w for w in index.warnings if name in w]
    assert len(found) == 1, (name, index.warnings)
    return found[0]


def test_folder_with_captions_any_extension_case(tmp_path):
    save_image(tmp_path / "a.png", caption="red, circle")
    save_image(tmp_path / "b.JPG", size=(30, 50), caption="blue, square\nsecond line ignored")
    save_image(tmp_path / "c.Jpeg", caption="green")
    save_image(tmp_path / "d.webp", caption="x")
    save_image(tmp_path / "e.BMP", caption="y")
    (tmp_path / "notes.md").write_text("not data")
    save_image(tmp_path / ".hidden.png", caption="hidden")
    save_image(tmp_path / ".lora_train_cache" / "f.png", caption="cache folder")

    index = scan_dataset(tmp_path)

    assert [r.name for r in index.records] == ["a.png", "b.JPG", "c.Jpeg", "d.webp", "e.BMP"]
    assert [r.caption for r in index.records] == ["red, circle", "blue, square", "green", "x", "y"]
    assert index.records[1].size == (30, 50)
    assert index.warnings == []
    assert index.num_images == 5 and index.num_train_images == 5


def test_repeat_folders_tag_frequency_and_dataset_dirs(tmp_path):
    root = tmp_path / "dataset"
    save_image(root / "10_char" / "a.png", caption="sks, Red hair, smile")
    save_image(root / "10_char" / "b.png", caption="sks, red hair")
    save_image(root / "3_style" / "c.png", caption="ink, sks")
    save_image(root / "extra" / "deep" / "d.png", caption="photo")
    save_image(root / "top.png", caption="top")
    save_image(root / "0_ignored" / "e.png", caption="never")

    index = scan_dataset(root, repeats=2)

    assert [(r.name, r.folder, r.repeats) for r in index.records] == [
        ("top.png", "dataset", 2), ("10_char/a.png", "10_char", 10), ("10_char/b.png", "10_char", 10),
        ("3_style/c.png", "3_style", 3), ("extra/deep/d.png", "extra", 2)]
    assert index.tag_frequency == {
        "dataset": {"top": 1},
        "10_char": {"sks": 2, "red hair": 2, "smile": 1},
        "3_style": {"ink": 1, "sks": 1},
        "extra": {"photo": 1},
    }
    assert index.dataset_dirs == {
        "dataset": {"n_repeats": 2, "img_count": 1},
        "10_char": {"n_repeats": 10, "img_count": 2},
        "3_style": {"n_repeats": 3, "img_count": 1},
        "extra": {"n_repeats": 2, "img_count": 1},
    }
    assert index.num_images == 5 and index.num_train_images == 2 + 20 + 3 + 2
    assert "0_ignored" in _warning_about(index, "0_ignored") and "N_name" in _warning_about(index, "0_ignored")


def test_tag_frequency_counts_the_trigger_word_once_per_image(tmp_path):
    save_image(tmp_path / "5_x" / "a.png", caption="sks, smile")
    save_image(tmp_path / "5_x" / "b.png", caption="smile")
    save_image(tmp_path / "5_x" / "c.png")

    index = scan_dataset(tmp_path, trigger_word="sks")

    assert index.tag_frequency == {"5_x": {"sks": 3, "smile": 2}}


def test_metadata_csv_relative_to_data_dir_or_csv_folder(tmp_path):
    data = tmp_path / "images"
    save_image(data / "sub" / "a.png", caption="ignored txt caption")
    save_image(tmp_path / "meta" / "b.png", size=(20, 40))
    csv = tmp_path / "meta" / "metadata.csv"
    csv.write_text('filename,prompt\nsub\\a.png,"red, ""shiny"" car"\nb.png,blue\n', encoding="utf-8-sig")

    index = scan_dataset(data, csv, repeats=4)

    assert [(r.path, r.caption, r.repeats, r.folder) for r in index.records] == [
        (data / "sub" / "a.png", 'red, "shiny" car', 4, "metadata.csv"),
        (tmp_path / "meta" / "b.png", "blue", 4, "metadata.csv")]
    assert index.dataset_dirs == {"metadata.csv": {"n_repeats": 4, "img_count": 2}}
    assert index.tag_frequency == {"metadata.csv": {"red": 1, '"shiny" car': 1, "blue": 1}}


def test_metadata_csv_alone_with_hugging_face_column_names(tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "metadata.csv").write_text("file_name,text,extra\na.png,a cat,1\n")

    index = scan_dataset(None, tmp_path / "metadata.csv")

    assert [r.caption for r in index.records] == ["a cat"]


@pytest.mark.parametrize("content, expected", [
    ("image,caption\na.png,x\n", ["metadata.csv", "filename,prompt", "found: image, caption"]),
    ('filename,prompt\na.png,"unclosed\n', ["metadata.csv line", "double quotes"]),
    ('filename,prompt\na.png,"a"b\n', ["metadata.csv line 2", "double quotes"]),
    ("filename,prompt\na.png,x\nb.png\n", ["metadata.csv line 3", "b.png", "remove it"]),
    ("filename,prompt\n", ["metadata.csv has a header but no rows"]),
    ("", ["metadata.csv is empty"]),
])
def test_metadata_csv_structure_errors_name_file_and_line(tmp_path, content, expected):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png")
    (tmp_path / "metadata.csv").write_text(content)

    with pytest.raises(UserError) as error:
        scan_dataset(tmp_path, tmp_path / "metadata.csv")

    for text in expected:
        assert text in str(error.value)


def test_metadata_rows_for_missing_files_are_skipped_then_refused_when_none_left(tmp_path):
    save_image(tmp_path / "a.png")
    csv = tmp_path / "metadata.csv"
    csv.write_text("filename,prompt\na.png,ok\ngone.png,lost\n")

    index = scan_dataset(tmp_path, csv)

    assert [r.name for r in index.records] == ["a.png"]
    assert "not found" in _warning_about(index, "line 3 (gone.png)")

    csv.write_text("filename,prompt\ngone.png,lost\nalso_gone.png,x\n")
    with pytest.raises(UserError, match="None of the 2 files named in .*metadata.csv exist"):
        scan_dataset(tmp_path, csv)


def test_missing_metadata_file_and_missing_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="cannot be read"):
        scan_dataset(None, tmp_path / "nope.csv")
    with pytest.raises(UserError, match="train_data_dir .*nope is not a folder"):
        scan_dataset(tmp_path / "nope")
    with pytest.raises(UserError, match="No dataset given"):
        scan_dataset(None)


def test_bad_image_corpus_each_skipped_with_a_warning_naming_it(tmp_path):
    good = save_image(tmp_path / "good.png", size=(64, 64), caption="fine")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a picture")
    for name, fmt in (("cut.jpg", "JPEG"), ("cut.png", "PNG"), ("cut.webp", "WEBP")):
        full = save_image(tmp_path / f"full_{name}", size=(96, 96), color=(10, 200, 90), format=fmt)
        data = full.read_bytes()
        full.unlink()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    save_image(tmp_path / "large.png", size=(200, 200))

    index = scan_dataset(tmp_path, max_pixels=150 * 150)

    assert [r.path for r in index.records] == [good]
    assert "empty (0 bytes)" in _warning_about(index, "empty.png")
    assert "not an image" in _warning_about(index, "text.jpg")
    for name in ("cut.jpg", "cut.png", "cut.webp"):
        assert "skipped" in _warning_about(index, name)
    assert "too large" in _warning_about(index, "bomb.png")
    assert "too large (200x200 pixels" in _warning_about(index, "large.png")


def test_jpeg_with_bytes_after_its_end_marker_is_kept(tmp_path):
    path = save_image(tmp_path / "tail.jpg", size=(32, 32), caption="x")
    path.write_bytes(path.read_bytes() + b"\x00" * 100 + b"trailer data from a phone")

    assert [r.name for r in scan_dataset(tmp_path).records] == ["tail.jpg"]


def test_empty_folder_and_folder_of_only_bad_images_are_user_errors(tmp_path):
    (tmp_path / "captions_only.txt").write_text("no image")
    with pytest.raises(UserError, match=r"No images in .*N_name"):
        scan_dataset(tmp_path)

    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("nope")
    with pytest.raises(UserError) as error:
        scan_dataset(tmp_path)
    assert "None of the 2 images" in str(error.value)
    assert "a.png" in str(error.value) and "b.jpg" in str(error.value)


def test_caption_problems_fall_back_to_the_trigger_word_with_warnings(tmp_path):
    save_image(tmp_path / "missing.png")
    save_image(tmp_path / "blank.png", caption="  \n\n")
    save_image(tmp_path / "bom.png").with_suffix(".txt").write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9, tag")
    save_image(tmp_path / "utf16.png").with_suffix(".txt").write_bytes("ok, \u00e9".encode("utf-16"))
    save_image(tmp_path / "windows.png").with_suffix(".txt").write_bytes(b"caf\xe9 \x93quoted\x94")
    save_image(tmp_path / "latin.png").with_suffix(".txt").write_bytes(b"\x81bad")

    index = scan_dataset(tmp_path, trigger_word="sks")
    captions = {r.name: r.caption for r in index.records}

    assert captions == {"blank.png": "", "bom.png": "café, tag", "latin.png": "\x81bad", "missing.png": "",
                        "utf16.png": "ok, é", "windows.png": "café “quoted”"}
    assert "no caption file" in _warning_about(index, "missing.png")
    assert "trigger word 'sks'" in _warning_about(index, "missing.png")
    assert "empty" in _warning_about(index, "blank.png")
    assert "Windows-1252" in _warning_about(index, "windows.txt")
    assert "Latin-1" in _warning_about(index, "latin.txt")
    assert not [w for w in index.warnings if "bom" in w or "utf16" in w]
    assert index.tag_frequency[tmp_path.name]["sks"] == 6

    no_trigger = scan_dataset(tmp_path)
    assert "empty caption" in _warning_about(no_trigger, "missing.png")


def test_many_files_with_one_problem_share_one_warning(tmp_path):
    for i in range(12):
        save_image(tmp_path / f"img{i:02d}.png")

    index = scan_dataset(tmp_path, trigger_word="sks")

    assert len(index.warnings) == 1
    assert index.warnings[0].startswith("img00.png, img01.png") and "and 4 more" in index.warnings[0]


def test_unused_metadata_csv_in_the_folder_is_pointed_out(tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "metadata.csv").write_text("filename,prompt\na.png,cat\n")

    index = scan_dataset(tmp_path)

    assert any("metadata_path" in w for w in index.warnings)


def test_scanning_never_writes_into_the_dataset(tmp_path):
    save_image(tmp_path / "10_a" / "a.png", caption="x")
    save_image(tmp_path / "b.jpg")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*")}

    scan_dataset(tmp_path, trigger_word="t")

    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*")} == before
    assert not any(name.startswith(".") for _, _, files in os.walk(tmp_path) for name in files)


def test_unreadable_image_is_skipped_with_its_reason(tmp_path, monkeypatch):
    save_image(tmp_path / "ok.png", caption="x")
    locked = save_image(tmp_path / "locked.png", caption="x")
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if Path(file) == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    index = scan_dataset(tmp_path)

    assert [r.name for r in index.records] == ["ok.png"]
    assert "Permission denied" in _warning_about(index, "locked.png")


def test_scanning_and_buckets_import_without_torch():
    code = ("import sys, lora_train.data.scan, lora_train.data.buckets, lora_train.data.captions; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
