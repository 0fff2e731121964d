"""`python -m lora_train caption` end to end with each method's tiny model, awkward images, the modes and
backups through the command line, the metadata.csv that trains as written, and one clear line per bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_data_helpers import png_header_only
from train_support import DATASET

from lora_train.fixtures.captioners import (BLIP_WORDS, build_blip, build_not_a_tagger, build_open_clip, build_tagger,
                                            image_folder)

ROOT = Path(__file__).resolve().parents[1]


def caption(*args, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    result = subprocess.run([sys.executable, "-m", "lora_train", "caption", *map(str, args), "--events", "jsonl"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, events


def error_of(result, events) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert len(errors) == 1
    return errors[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("captioners")
    return {"tagger": build_tagger(root / "tagger"), "blip": build_blip(root / "blip"),
            "clip": build_open_clip(root / "clip")}


def awkward_folder(folder: Path) -> Path:
    image_folder(folder)
    image_folder(folder / "10_sub", {"red2": (255, 0, 0)})
    Image.new("CMYK", (24, 24), (255, 255, 0, 0)).save(folder / "cmyk.jpg")  # blue in CMYK
    Image.fromarray(np.full((24, 24), 40000, np.uint16)).save(folder / "grey16.png")
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.png", save_all=True, append_images=frames[1:])
    whole = (folder / "red.png").read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(12_000, 12_000))
    return folder


def test_tagger_captions_a_folder_skipping_broken_images_then_modes_backups_restore(tmp_path, models):
    folder = awkward_folder(tmp_path / "images")
    result, events = caption(folder, "--model", models["tagger"], "--trigger-word", "zkw", "--rating")
    assert result.returncode == 0, result.stderr
    read = lambda name: (folder / name).read_text().strip()  # noqa: E731
    assert read("red.txt") == "zkw, sensitive, red background, ^_^"
    assert read("blue.txt") == "zkw, general, blue background, ^_^"
    assert read("green.txt") == "zkw, general, hatsune miku, ^_^"
    assert read("10_sub/red2.txt") == read("red.txt")
    assert read("cmyk.txt") == read("blue.txt")
    assert read("animated.txt") == read("red.txt")  # the first frame
    assert read("grey16.txt").startswith("zkw, ")
    assert not (folder / "truncated.txt").exists() and not (folder / "bomb.txt").exists()
    warnings = " ".join(e["message"] for e in events if e["type"] == "log" and e.get("level") == "warning")
    assert "truncated.png" in warnings and "bomb.png" in warnings and "too large" in warnings
    assert any("animated.png" in e.get("message", "") for e in events)
    assert [e["step"] for e in events if e["type"] == "step"][-1] == 9
    assert "runs on the CPU" in " ".join(e.get("message", "") for e in events)

    result, events = caption(folder, "--model", models["tagger"])  # skip: only the broken two are tried again
    assert result.returncode == 0 and events[0]["total"] == 2 and read("red.txt").startswith("zkw, sensitive")

    result, events = caption(folder, "--model", models["tagger"], "--mode", "overwrite", "--general-threshold",
                             "0.6", "--exclude-tags", "hatsune_miku")
    assert result.returncode == 0, result.stderr
    assert read("red.txt") == "red background" and read("green.txt") == ""
    backups = list((folder / ".caption_backups").iterdir())
    assert len(backups) == 1 and (backups[0] / "red.txt").read_text().strip() == "zkw, sensitive, red background, ^_^"
    assert (backups[0] / "10_sub" / "red2.txt").is_file()

    result, events = caption(folder, "--restore", "latest")
    assert result.returncode == 0, result.stderr
    assert read("red.txt") == "zkw, sensitive, red background, ^_^" and read("green.txt").endswith("^_^")


@pytest.mark.slow
def test_vlm_captions_with_the_prompt_as_the_captions_start(tmp_path, models):
    folder = image_folder(tmp_path / "images")
    result, events = caption(folder, "--method", "vlm", "--model", models["blip"], "--prompt", "a photo of {name}",
                             "--max-new-tokens", "4", "--batch-size", "2", "--trigger-word", "zkw")
    assert result.returncode == 0, result.stderr
    for name in ("red", "blue"):
        text = (folder / f"{name}.txt").read_text().strip()
        assert text.startswith(f"zkw, a photo of {name}")
        assert set(text.removeprefix("zkw, ").split()) <= set(BLIP_WORDS)
    assert [e["step"] for e in events if e["type"] == "step"] == [2, 3]


@pytest.mark.slow
def test_clip_ranking_in_the_lora_scripts_form_writes_only_metadata_csv(tmp_path, models):
    folder = image_folder(tmp_path / "images")
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("red\nblue square\n# a comment\n\ngreen circle\nred\n")
    csv_path = folder / "metadata.csv"
    result, _ = caption("--input", folder, "--output", csv_path, "--method", "clip", "--model", models["clip"],
                        "--vocabulary", vocabulary, "--top-k", "2", "--min-score", "-1")
    assert result.returncode == 0, result.stderr
    from lora_train.data.metadata_csv import read_metadata_csv

    rows = read_metadata_csv(csv_path)[0]
    assert sorted(r.filename for r in rows) == ["blue.png", "green.png", "red.png"]
    for row in rows:
        phrases = row.prompt.split(", ")
        assert len(phrases) == 2 and set(phrases) <= {"red", "blue square", "green circle"}
    assert not list(folder.glob("*.txt"))
    result, _ = caption("--input", folder, "--output", tmp_path / "none.csv", "--method", "clip", "--model",
                        models["clip"], "--vocabulary", vocabulary, "--min-score", "1.01")
    assert result.returncode == 0 and "blue.png," in (tmp_path / "none.csv").read_text()  # nothing above 1.0


@pytest.mark.slow
def test_metadata_csv_written_by_the_tagger_trains_unchanged(tmp_path, models, tiny_sd1_file):
    from safetensors import safe_open

    from train_support import train

    folder = tmp_path / "dataset"
    folder.mkdir()
    for image in sorted(DATASET.glob("*.png"))[:4]:
        shutil.copy(image, folder / image.name)
    result, _ = caption("--input", folder, "--output", folder / "metadata.csv", "--model", models["tagger"],
                        "--general-threshold", "0.2", "--trigger-word", "zkw")
    assert result.returncode == 0, result.stderr
    lora, events = train(tiny_sd1_file, tmp_path / "out", train_data_dir=str(folder),
                         metadata_path=str(folder / "metadata.csv"), max_train_steps=2)
    assert any(e["type"] == "done" for e in events)
    with safe_open(str(lora), "pt") as handle:
        frequency = json.loads(handle.metadata()["ss_tag_frequency"])
    tags = next(iter(frequency.values()))
    assert tags["zkw"] == 4 and "^_^" in tags


@pytest.mark.slow
def test_bad_inputs_give_one_clear_line(tmp_path, models):
    folder = image_folder(tmp_path / "images")
    empty = tmp_path / "empty"
    empty.mkdir()
    message = error_of(*caption(empty, "--model", models["tagger"]))
    assert "No images in" in message and str(empty) in message

    message = error_of(*caption(folder, "--model", tmp_path / "missing" / "model.onnx"))
    assert "not found" in message

    captioners = tmp_path / "captioners"
    message = error_of(*caption(folder, "--model", "someone/wd-tagger", "--captioners-dir", captioners))
    assert "someone/wd-tagger" in message and "model.onnx, selected_tags.csv" in message
    assert str(captioners / "someone--wd-tagger") in message

    not_tagger = build_not_a_tagger(tmp_path / "identity" / "model.onnx")
    shutil.copy(models["tagger"] / "selected_tags.csv", not_tagger.parent)
    assert "is not a WD tagger" in error_of(*caption(folder, "--model", not_tagger))

    message = error_of(*caption(folder, "--method", "vlm", "--model", models["blip"], "--prompt", "{tags}"))
    assert "--tagger-model" in message

    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "florence2", "auto_map": {"AutoModel": "x.Y"}}))
    assert "remote code" in error_of(*caption(folder, "--method", "vlm", "--model", remote))

    message = error_of(*caption(folder, "--method", "clip", "--model", models["clip"]))
    assert "--vocabulary" in message
