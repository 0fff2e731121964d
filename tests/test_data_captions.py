"""Captions at training time: trigger word, shuffle with keep_tokens, dropout, reproducibility."""

from __future__ import annotations

import random

import pytest

from lora_train.data.captions import CaptionOptions, count_tags, decode_text, process_caption, with_trigger


@pytest.mark.parametrize("caption, expected", [
    ("red hair, smile", "sks, red hair, smile"),
    ("sks, red hair", "sks, red hair"),
    ("SKS, red hair", "SKS, red hair"),
    ("sks woman sitting on a bench", "sks woman sitting on a bench"),
    ("sks_style, red", "sks, sks_style, red"),
    ("", "sks"),
])
def test_trigger_word_in_front_once(caption, expected):
    assert with_trigger(caption, "sks") == expected
    assert process_caption(caption, CaptionOptions(trigger_word="sks"), random.Random(0)) == expected


def test_no_trigger_word_leaves_the_caption_alone():
    assert with_trigger("a , b", "") == "a , b"
    assert process_caption("a , b", CaptionOptions(), random.Random(0)) == "a , b"


def test_shuffle_keeps_the_first_keep_tokens_with_the_trigger_counting_as_one():
    options = CaptionOptions(trigger_word="sks", shuffle=True, keep_tokens=2)
    rng = random.Random(1)
    results = {process_caption("blue eyes, a, b, c, d, e", options, rng) for _ in range(200)}

    assert len(results) > 20
    for result in results:
        tags = result.split(", ")
        assert tags[:2] == ["sks", "blue eyes"]
        assert sorted(tags[2:]) == ["a", "b", "c", "d", "e"]


def test_a_trigger_word_with_commas_is_one_kept_unit():
    options = CaptionOptions(trigger_word="sks, style", shuffle=True, keep_tokens=1)
    results = {process_caption("x, y, z", options, random.Random(seed)) for seed in range(50)}

    assert all(result.startswith("sks, style, ") for result in results)
    assert len(results) == 6


def test_shuffle_without_keep_tokens_moves_everything_including_the_trigger():
    options = CaptionOptions(trigger_word="sks", shuffle=True)
    firsts = {process_caption("a, b, c", options, random.Random(seed)).split(", ")[0] for seed in range(50)}

    assert firsts == {"sks", "a", "b", "c"}


def test_dropout_empties_the_whole_caption_at_the_given_rate():
    rng = random.Random(3)
    options = CaptionOptions(trigger_word="sks", dropout_rate=0.25)
    results = [process_caption("a, b", options, rng) for _ in range(4000)]

    assert set(results) == {"", "sks, a, b"}
    assert 0.22 < results.count("") / len(results) < 0.28
    assert process_caption("a", CaptionOptions(dropout_rate=1.0), rng) == ""


def test_same_seed_same_captions():
    options = CaptionOptions(trigger_word="t", shuffle=True, keep_tokens=1, dropout_rate=0.3)
    caption = "a, b, c, d, e, f"

    def run(seed):
        rng = random.Random(seed)
        return [process_caption(caption, options, rng) for _ in range(30)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_tag_counts_are_kohya_style():
    assert count_tags(["A, b , ,b", "a"]) == {"a": 2, "b": 2}


@pytest.mark.parametrize("data, text, warned", [
    ("café".encode("utf-8"), "café", None),
    (b"\xef\xbb\xbfcaf\xc3\xa9", "café", None),
    ("café".encode("utf-16"), "café", None),
    (b"caf\xe9", "café", "Windows-1252"),
    (b"\x81x", "\x81x", "Latin-1"),
])
def test_text_decoding(data, text, warned):
    decoded, warning = decode_text(data)

    assert decoded == text
    assert (warning is None) if warned is None else (warned in warning and "UTF-8" in warning)
