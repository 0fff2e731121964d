"""The dataset doctor: each planted problem in a test folder is found, named and explained; a clean folder
has no finding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lora_train.data.caption_tokens import token_floor
from lora_train.data.doctor import examine_dataset
from lora_train.data.plan import DataSettings, plan_dataset

SETTINGS = {"train_data_dir": None, "caption_extension": ".txt", "trigger_word": "sks", "repeats": 1,
            "resolution": 512, "enable_bucket": True, "min_bucket_reso": 256, "max_bucket_reso": 1024,
            "bucket_reso_steps": 64, "bucket_no_upscale": False}


def picture(seed: int, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """A smooth random picture (a 6x6 colour pattern enlarged): pictures of different seeds differ plainly."""
    pattern = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(pattern).resize(size, Image.Resampling.BICUBIC)


def save(folder: Path, name: str, image: Image.Image, caption: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)
    (folder / name).with_suffix(".txt").write_text(caption, encoding="utf-8")


def examine(root: Path, **changes):
    settings = DataSettings.from_values({**SETTINGS, "train_data_dir": str(root), **changes})
    return examine_dataset(plan_dataset(settings), settings)


def clean_folder(root: Path) -> None:
    save(root, "a.png", picture(1), "sks, red hair, smile")
    save(root, "b.png", picture(2, (512, 768)), "sks, blue dress, standing")
    save(root, "c.png", picture(3), "sks, garden, sitting")
    save(root, "d.png", picture(4, (768, 512)), "sks, night, city")


def test_a_clean_folder_has_no_finding(tmp_path):
    clean_folder(tmp_path)
    assert examine(tmp_path) == []


def test_each_planted_problem_is_found_with_its_files_and_advice(tmp_path):
    root = tmp_path / "data"
    char, style = root / "10_char", root / "1_style"
    save(char, "a.png", picture(1), "sks, solo, red hair")
    save(char, "a_copy.png", picture(1), "sks, solo, red hair again")
    save(char, "a_smaller.jpg", picture(1).resize((480, 480)).point(lambda v: min(255, v + 6)), "sks, solo, shade")
    save(style, "cat.png", picture(5), "a cat, solo")
    save(style, "middle.png", picture(6), "a photo of sks, solo")
    save(style, "tiny.png", picture(7, (100, 100)), "sks, solo, tiny")
    save(style, "banner.png", picture(8, (1200, 400)), "sks, solo, banner")
    save(style, "long.png", picture(9), "sks, solo, " + ", ".join(f"detail{i} word" for i in range(40)))

    findings = examine(root)
    by_check = {}
    for finding in findings:
        by_check.setdefault(finding.check, []).append(finding)

    assert set(by_check) == {"duplicates", "trigger", "small", "aspect", "long_caption", "common_tags",
                             "repeat_balance"}
    (duplicates,) = by_check["duplicates"]
    assert duplicates.files == ("10_char/a.png", "10_char/a_copy.png", "10_char/a_smaller.jpg")
    assert "near-duplicates" in duplicates.message and "keep one of them" in duplicates.message
    missing, inside = by_check["trigger"]
    assert missing.files == ("1_style/cat.png",) and "does not name the trigger word 'sks'" in missing.message
    assert inside.files == ("1_style/middle.png",) and "trained with it twice" in inside.message
    assert by_check["small"][0].files == ("1_style/tiny.png",) and "5.1x" in by_check["small"][0].message
    assert by_check["aspect"][0].files == ("1_style/banner.png",) and "1200x400" in by_check["aspect"][0].message
    (long,) = by_check["long_caption"]
    assert long.files == ("1_style/long.png",) and "at least 193 tokens" in long.message
    assert "'solo'" in by_check["common_tags"][0].message and "absorbed" in by_check["common_tags"][0].message
    balance = by_check["repeat_balance"][0].message
    assert "10_char: 3 images x 10 repeats = 30 views" in balance and "1_style: 5 images x 1 repeats = 5 views" in balance
    assert "10_char 10, 1_style 6" in balance


def test_no_trigger_word_no_trigger_finding_and_an_exact_counter_is_used(tmp_path):
    clean_folder(tmp_path)
    save(tmp_path, "e.png", picture(10), "a long caption " * 30)
    settings = DataSettings.from_values({**SETTINGS, "train_data_dir": str(tmp_path), "trigger_word": ""})
    findings = examine_dataset(plan_dataset(settings), settings, count_tokens=lambda texts: [80] * len(texts))
    assert [finding.check for finding in findings] == ["long_caption"]
    assert "(80 tokens)" in findings[0].message and "at least" not in findings[0].message
    assert len(findings[0].files) == 5


def test_the_token_floor_matches_clip_on_plain_captions():
    assert token_floor("1girl, blue eyes, long_hair") == 9  # 1 girl , blue eyes , long _ hair
    assert token_floor("don't stop!!") == 4  # don 't stop !!


def test_flat_pictures_of_different_colours_are_not_duplicates(tmp_path):
    for index, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        save(tmp_path, f"{index}.png", Image.new("RGB", (512, 512), colour), f"sks, colour {index}")
    save(tmp_path, "3.png", Image.new("RGB", (512, 512), (205, 30, 30)), "sks, colour again")
    (duplicates,) = [finding for finding in examine(tmp_path) if finding.check == "duplicates"]
    assert duplicates.files == ("0.png", "3.png")
