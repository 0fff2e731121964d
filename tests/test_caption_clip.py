"""CLIP ranking's pieces: open_clip's classes without torchvision, the eval preprocessing by hand, the vocabulary,
the ranking itself, and hub downloads failing with the files to fetch by hand."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from PIL import Image

from lora_train.fixtures.captioners import build_open_clip
from lora_train.caption.clip_ranker import OPENAI_MEAN, OPENAI_STD, ClipOptions, ClipRanker, Preprocess, preprocess, \
    read_vocabulary
from lora_train.caption.model_source import ModelFiles, resolve_model
from lora_train.core.errors import UserError


def test_preprocessing_matches_open_clips_eval_transform_by_hand():
    image = Image.new("RGB", (64, 32), (255, 0, 0))
    image.paste((0, 0, 255), (32, 0, 64, 32))  # left half red, right half blue
    array = preprocess(image, Preprocess(16))  # shorter side to 16 (32x16), centre crop 16x16: columns 8..23
    assert array.shape == (3, 16, 16) and array.dtype == np.float32
    red = (np.array([1.0, 0.0, 0.0]) - OPENAI_MEAN) / OPENAI_STD
    blue = (np.array([0.0, 0.0, 1.0]) - OPENAI_MEAN) / OPENAI_STD
    assert np.allclose(array[:, 5, 0], red, atol=1e-5) and np.allclose(array[:, 5, 15], blue, atol=1e-5)
    squashed = preprocess(image, Preprocess(16, mean=(0, 0, 0), std=(1, 1, 1), resize_mode="squash"))
    assert np.allclose(squashed[:, 0, 0], [1, 0, 0]) and np.allclose(squashed[:, 0, 15], [0, 0, 1])


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_open_clip_classes_load_without_torchvision_and_leave_no_stand_in():
    from lora_train.caption.open_clip_import import open_clip_modules

    model_module, coca_module = open_clip_modules()
    assert hasattr(model_module, "CLIP") and hasattr(coca_module, "CoCa")
    assert "torchvision" not in sys.modules and "open_clip" not in sys.modules


def test_vocabulary_lines_once_without_comments(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_text("\ufeffred\n\n# colours\nblue sky\nred\n", encoding="utf-8")
    assert read_vocabulary(path) == ["red", "blue sky"]
    path.write_text("# nothing\n")
    with pytest.raises(UserError, match="is empty"):
        read_vocabulary(path)


def test_a_vocabulary_in_windows_1252_is_read_with_a_warning_not_a_crash(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_bytes("café art\nred\n".encode("cp1252"))
    events = []
    assert read_vocabulary(path, events.append) == ["café art", "red"]
    assert [(e["level"], e["message"]) for e in events] == [
        ("warning", f"{path}: not UTF-8, read as Windows-1252: re-save it as UTF-8 if some characters look wrong")]


def test_ranking_is_the_top_k_cosine_similarities_above_the_score(tmp_path):
    import torch

    folder = build_open_clip(tmp_path / "clip")
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("red\nblue\ngreen\nyellow\n")
    ranker = ClipRanker(folder, ClipOptions(vocabulary, top_k=2, min_score=-1.0), "cpu")
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    pixels = torch.from_numpy(preprocess(image, ranker.spec))[None]
    with torch.no_grad():
        features = torch.nn.functional.normalize(ranker.model.encode_image(pixels), dim=-1)
    scores = (features @ ranker.text_features.T)[0].numpy()
    expected = [ranker.vocabulary[i] for i in np.argsort(-scores)[:2]]
    assert ranker.phrases([image]) == [expected]
    best = float(scores.max())
    strict = ClipRanker(folder, ClipOptions(vocabulary, top_k=4, min_score=best - 1e-6), "cpu")
    assert strict.phrases([image]) == [[expected[0]]]


def test_hub_download_failure_names_repo_files_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = ModelFiles(required=("model.onnx", "selected_tags.csv"), download=("model.onnx", "selected_tags.csv"))
    with pytest.raises(UserError) as error:
        resolve_model("SmilingWolf/wd-vit-tagger-v3", files, tmp_path, lambda event: None)
    message = str(error.value)
    assert "https://huggingface.co/SmilingWolf/wd-vit-tagger-v3" in message
    assert "model.onnx, selected_tags.csv" in message and str(tmp_path / "SmilingWolf--wd-vit-tagger-v3") in message


def test_a_repo_already_downloaded_is_used_without_the_hub(tmp_path):
    files = ModelFiles(required=("model.onnx",), download=("model.onnx",))
    target = tmp_path / "owner--tagger"
    target.mkdir()
    (target / "model.onnx").write_bytes(b"x")
    assert resolve_model("owner/tagger", files, tmp_path, lambda event: None) == target


def test_download_progress_becomes_events():
    from lora_train.caption.model_source import download_progress

    events = []
    bar = download_progress("owner/model", events.append, every_s=0)(total=4 * 2**20, unit="B")
    bar.update(2**20)
    bar.update(3 * 2**20)
    small = download_progress("owner/small", events.append, every_s=0)(total=30_000, unit="B")
    small.update(30_000)  # a small file: its size, not "0.0 of 0.0 MB"
    assert [e["message"] for e in events] == ["Downloading owner/model: 1.0 MB of 4.0 MB",
                                              "Downloading owner/model: 4.0 MB of 4.0 MB",
                                              "Downloading owner/small: 29 KB of 29 KB"]


@pytest.mark.slow
def test_coca_without_a_vocabulary_writes_greedy_captions(tmp_path):
    import torch

    from lora_train.caption.coca import greedy_tokens

    ranker = ClipRanker(build_open_clip(tmp_path / "coca", coca=True), ClipOptions(max_new_tokens=6), "cpu")
    assert ranker.generates
    images = [Image.new("RGB", (40, 40), (200, 30, 30)), Image.new("RGB", (40, 40), (20, 30, 230))]
    captions = ranker.captions(images)
    assert len(captions) == 2 and all(isinstance(text, str) for text in captions)
    pixels = ranker._pixels(images)
    start, end = ranker.tokenizer.bos_token_id, ranker.tokenizer.eos_token_id
    rows = greedy_tokens(ranker.model, pixels, start, end, 6)
    assert all(rows) and all(len(row) <= 6 for row in rows)
    for image, row in enumerate(rows):  # each chosen token is the decoder's most likely one after the ones before
        text = torch.tensor([[start] + row])
        with torch.no_grad():
            logits = ranker.model(pixels[image:image + 1], text, output_labels=False)["logits"][0]
        assert logits[:-1].argmax(-1).tolist() == row
