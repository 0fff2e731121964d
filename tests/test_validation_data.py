"""The validation images: held out of the training data by seed (val_split) or a folder of their own
(val_data_dir), and the config's refusals that name the key and what to do."""

from __future__ import annotations

import shutil

import pytest

from lora_train.config import load_config
from lora_train.core.errors import UserError
from lora_train.train.image_data import build_image_data
from train_support import DATASET


def config(tmp_path, **keys):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x")
    return load_config(overrides={"base_model": str(model), "train_data_dir": str(DATASET), "resolution": 64,
                                  "enable_bucket": False, **keys})


def names(dataset) -> list[str]:
    return [record.name for record in dataset.records]


def test_val_split_holds_out_the_same_images_for_the_same_seed(tmp_path):
    data = build_image_data(config(tmp_path, val_split=3, seed=5))
    train, held_out = names(data.dataset), names(data.validation)
    assert len(held_out) == 3 and len(train) == 5 and not set(train) & set(held_out)
    assert data.index.num_images == 5, "the held-out images are still trained on"
    assert names(build_image_data(config(tmp_path, val_split=3, seed=5)).validation) == held_out
    picks = {tuple(names(build_image_data(config(tmp_path, val_split=3, seed=seed)).validation))
             for seed in range(5)}
    assert len(picks) > 1, "the seed does not choose the held-out images"


def test_a_fraction_holds_out_at_least_one_image(tmp_path):
    assert len(build_image_data(config(tmp_path, val_split=0.25)).validation) == 2  # 8 images
    assert len(build_image_data(config(tmp_path, val_split=0.01)).validation) == 1
    assert build_image_data(config(tmp_path)).validation is None


def test_val_data_dir_is_a_folder_of_its_own(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    for path in sorted(DATASET.glob("0[01]_*")):
        shutil.copy(path, folder)
    data = build_image_data(config(tmp_path, val_data_dir=str(folder)))
    assert names(data.validation) == ["00_red_circle.png", "01_blue_square.png"]
    assert data.index.num_images == 8


def test_a_val_split_that_leaves_no_training_image_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"val_split 8 holds out 8 of the 8 images, which leaves none to train on"):
        build_image_data(config(tmp_path, val_split=8))


def test_a_val_data_dir_without_images_is_refused_by_name(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=rf"val_data_dir: No images in {empty}"):
        build_image_data(config(tmp_path, val_data_dir=str(empty)))


@pytest.mark.parametrize("keys, message", [
    ({"val_split": 2, "val_data_dir": "."}, "'val_split' and 'val_data_dir' are both set"),
    ({"val_split": 2.5}, r"'val_split' is 2.5: use a fraction below 1 \(0.1\) or a whole count"),
    ({"keep_best": True}, "'keep_best' needs a validation loss: set val_split"),
    ({"early_stop_patience": 2}, "'early_stop_patience' needs a validation loss"),
])
def test_validation_keys_that_cannot_work_are_refused(tmp_path, keys, message):
    with pytest.raises(UserError, match=message):
        config(tmp_path, **keys)
