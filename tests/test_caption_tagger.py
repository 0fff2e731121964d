"""The WD tagger: its preprocessing, the tiny ONNX tagger's outputs and the tag selection, against hand-computed
values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lora_train.fixtures.captioners import TAGGER_SIZE, build_not_a_tagger, build_tagger, expected_probabilities
from lora_train.caption.tagger import WdTagger, prepare
from lora_train.caption.tags import TagList, TagOptions, format_tag, mcut_threshold, read_selected_tags, select
from lora_train.core.errors import UserError


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    return build_tagger(tmp_path_factory.mktemp("tagger") / "wd-tiny")


def tagger(folder, **options):
    return WdTagger(folder, TagOptions(**options), "cpu", lambda event: None)


def test_preprocessing_pads_white_centres_and_feeds_bgr():
    image = Image.new("RGB", (4, 2))
    image.putdata([(10, 20, 30), (40, 50, 60), (70, 80, 90), (1, 2, 3)] * 2)
    array = prepare(image, 4)  # already square after padding: no resize
    assert array.shape == (4, 4, 3) and array.dtype == np.float32
    assert (array[0] == 255).all() and (array[3] == 255).all()  # white rows above and below
    assert array[1, 0].tolist() == [30, 20, 10]  # BGR
    assert array[2, 3].tolist() == [3, 2, 1]
    tall = prepare(Image.new("RGB", (1, 3), (0, 0, 0)), 3)
    assert tall[:, 0].min() == 255 and tall[:, 2].min() == 255 and tall[:, 1].max() == 0


def test_preprocessing_resizes_to_the_model_size():
    array = prepare(Image.new("RGB", (50, 50), (200, 100, 0)), 16)
    assert array.shape == (16, 16, 3) and np.allclose(array, [0, 100, 200])


def test_transparency_becomes_white(tmp_path):
    from lora_train.caption.images import load

    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    item = load(tmp_path / "clear.png", tmp_path)
    assert np.allclose(prepare(item.image, 8), 255)


def test_tiny_tagger_outputs_match_the_hand_computed_probabilities(tagger_dir):
    model = tagger(tagger_dir)
    assert model.size == TAGGER_SIZE
    images = [Image.new("RGB", (20, 20), rgb) for rgb in ((255, 0, 0), (0, 0, 255), (30, 200, 90))]
    got = model.probabilities(images)
    for row, rgb in zip(got, ((255, 0, 0), (0, 0, 255), (30, 200, 90))):
        assert np.allclose(row, expected_probabilities(rgb), atol=2e-3)  # bicubic resize of a plain colour


def test_tags_by_threshold_character_first_and_top_rating_only(tagger_dir):
    # green: miku 0.982 >= 0.85, ^_^ 0.5 >= 0.35, long_hair 0.269 < 0.35; rating general 0.731 > sensitive
    assert tagger(tagger_dir).tags([Image.new("RGB", (16, 16), (0, 255, 0))]) == [["hatsune miku", "^_^"]]
    with_rating = tagger(tagger_dir, include_rating=True, general_threshold=0.2)
    assert with_rating.tags([Image.new("RGB", (16, 16), (0, 255, 0))]) == [
        ["general", "hatsune miku", "^_^", "long hair"]]
    strict = tagger(tagger_dir, character_threshold=0.99, general_threshold=0.6)
    assert strict.tags([Image.new("RGB", (16, 16), (0, 255, 0))]) == [[]]


def test_kaomoji_keep_underscores_others_become_spaces():
    assert format_tag("long_hair") == "long hair"
    assert format_tag("^_^") == "^_^" and format_tag("o_o") == "o_o"
    assert format_tag("long_hair", underscores_to_spaces=False) == "long_hair"


def _tags(*names_and_categories):
    names = [n for n, _ in names_and_categories]
    cats = np.array([c for _, c in names_and_categories])
    return TagList(names, *(np.flatnonzero(cats == c) for c in (9, 0, 4)))


def test_mcut_threshold_by_hand():
    # sorted 0.9 0.8 0.3 0.2: largest gap 0.8 -> 0.3, threshold 0.55
    assert mcut_threshold(np.array([0.3, 0.9, 0.2, 0.8])) == pytest.approx(0.55)
    tags = _tags(("a", 0), ("b", 0), ("c", 0), ("d", 0), ("who", 4), ("other", 4))
    probabilities = np.array([0.3, 0.9, 0.2, 0.8, 0.12, 0.05])
    assert select(probabilities, tags, TagOptions(general_mcut=True)) == ["b", "d"]
    # character MCut would be 0.085; it never goes below 0.15, so no character here
    assert select(probabilities, tags, TagOptions(general_mcut=True, character_mcut=True)) == ["b", "d"]
    probabilities[4] = 0.6  # character MCut threshold (0.6 + 0.05) / 2 = 0.325: kept, and first
    assert select(probabilities, tags, TagOptions(general_mcut=True, character_mcut=True)) == ["who", "b", "d"]


def test_exclude_replace_and_always_first():
    tags = _tags(("1girl", 0), ("long_hair", 0), ("smile", 0))
    probabilities = np.array([0.9, 0.8, 0.7])
    options = TagOptions(exclude=("long hair",), replace={"1girl": "woman"}, always_first=("zkw", "smile"))
    assert select(probabilities, tags, options) == ["zkw", "smile", "woman"]


def test_selected_tags_csv_is_read_by_category(tagger_dir):
    tags = read_selected_tags(tagger_dir / "selected_tags.csv")
    assert tags.rating.tolist() == [0, 1] and tags.general.tolist() == [2, 3, 4, 5] and tags.character.tolist() == [6]


def test_an_onnx_that_is_not_a_tagger_is_refused(tmp_path, tagger_dir):
    folder = tmp_path / "identity"
    build_not_a_tagger(folder / "model.onnx")
    (folder / "selected_tags.csv").write_text((tagger_dir / "selected_tags.csv").read_text())
    with pytest.raises(UserError, match="is not a WD tagger"):
        tagger(folder)


def test_a_tag_list_of_another_model_is_refused(tmp_path, tagger_dir):
    folder = tmp_path / "mismatch"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((tagger_dir / "model.onnx").read_bytes())
    (folder / "selected_tags.csv").write_text("tag_id,name,category,count\n0,a,0,1\n")
    with pytest.raises(UserError, match="7 outputs but .* lists 1 tags"):
        tagger(folder)


def test_a_csv_that_is_not_a_tag_list_is_refused(tmp_path):
    path = tmp_path / "selected_tags.csv"
    path.write_text("filename,prompt\na.png,x\n")
    with pytest.raises(UserError, match="not a WD tagger tag list"):
        read_selected_tags(path)


def test_cuda_asked_for_without_it_says_why_as_a_warning(tagger_dir):
    events = []
    WdTagger(tagger_dir, TagOptions(), "cuda", events.append)
    notes = [e for e in events if "runs on the" in e["message"]]
    assert len(notes) == 1
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert notes[0]["level"] == "warning" and "CPU" in notes[0]["message"] and "onnxruntime-gpu" in notes[0]["message"]


def test_a_model_file_that_is_no_onnx_says_what_the_tagger_takes(tmp_path, tiny_sd1_file):
    with pytest.raises(UserError, match=r"tiny-sd1.safetensors is not a WD tagger's model.onnx \(it is a .safetensors "
                                        r"file\).*--method vlm"):
        tagger(tiny_sd1_file)


def test_the_summary_tells_new_captions_from_changed_ones(tmp_path, tagger_dir):
    from lora_train.caption.methods import MethodOptions
    from lora_train.caption.run import CaptionJob, run_caption
    from lora_train.caption.writer import WriteOptions
    from lora_train.fixtures.captioners import image_folder

    folder = image_folder(tmp_path / "images")
    images = sorted(folder.glob("*.png"))
    images[0].with_suffix(".txt").write_text("old caption")
    events = []
    run_caption(CaptionJob(folder, MethodOptions(model=str(tagger_dir), device="cpu"), WriteOptions(mode="overwrite")),
                events.append)
    done = next(event["message"] for event in events if event["type"] == "done")
    assert f"{len(images) - 1} new captions written, 1 existing changed, 0 existing kept" in done
