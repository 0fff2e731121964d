"""Encoder output caches: hits on the second run (no image decoded), invalidation, atomic files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_data_helpers import save_image

from lora_train.data import cache as cache_module
from lora_train.data.buckets import BucketSettings, plan_buckets
from lora_train.data.cache import CACHE_DIR_NAME, TensorCache, choose_cache_dir
from lora_train.data.captions import CaptionOptions
from lora_train.data.dataset import ImageDataset, ItemOptions, collate
from lora_train.data.scan import scan_dataset
from lora_train.core.errors import UserError
from lora_train.core import atomic
from lora_train.core.atomic import replace_file


class FakeVae:
    """Counts the images it encodes; latents are 8x-downsampled pixels."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        self.images += pixels.shape[0]
        return torch.nn.functional.avg_pool2d(pixels, 8)


def _dataset(root: Path, resolution: int = 64, **options) -> ImageDataset:
    index = scan_dataset(root, trigger_word="sks")
    plan = plan_buckets([r.size for r in index.records], [r.name for r in index.records],
                        BucketSettings(resolution, min_bucket_reso=32, max_bucket_reso=128, bucket_reso_steps=32))
    return ImageDataset(index.records, plan, ItemOptions(**options))


def _images(root: Path) -> None:
    save_image(root / "a.png", size=(64, 64), color=(255, 0, 0), caption="red")
    save_image(root / "b.jpg", size=(96, 48), color=(0, 255, 0), caption="green")
    save_image(root / "2_x" / "c.webp", size=(48, 96), color=(0, 0, 255), caption="blue")


def _cache_latents(root: Path, resolution: int = 64, vae_id: str = "vae-1"):
    dataset, vae = _dataset(root, resolution), FakeVae()
    cache_dir, _ = choose_cache_dir(root, None)
    cache = TensorCache(cache_dir / "latents")
    dataset.cache_latents(vae, vae_id, cache, batch_size=2)
    return dataset, vae, cache


def test_second_run_reads_every_latent_from_disk_and_decodes_no_image(tmp_path):
    _images(tmp_path)
    first, first_vae, first_cache = _cache_latents(tmp_path)
    assert (first_cache.stats.hits, first_cache.stats.misses, first_vae.images, first.images_decoded) == (0, 3, 3, 3)

    second, second_vae, second_cache = _cache_latents(tmp_path)
    items = [second[i] for i in range(len(second))]

    assert (second_cache.stats.hits, second_cache.stats.misses) == (3, 0)
    assert second_vae.images == 0 and second.images_decoded == 0
    for i, item in enumerate(items):
        assert "pixel_values" not in item
        assert torch.equal(item["latents"], first[i]["latents"])
        bucket_w, bucket_h = second.plan.assignments[i].bucket
        assert item["latents"].shape == (3, bucket_h // 8, bucket_w // 8)
        assert item["target_size"] == (bucket_h, bucket_w)
    assert first[0]["latents"][0].mean() > 0.9, "red image: red channel near +1"
    assert len(list((tmp_path / CACHE_DIR_NAME / "latents").glob("*.safetensors"))) == 3


def test_changed_image_bytes_miss_only_that_image(tmp_path):
    _images(tmp_path)
    _cache_latents(tmp_path)
    save_image(tmp_path / "a.png", size=(64, 64), color=(250, 0, 0))

    dataset, vae, cache = _cache_latents(tmp_path)

    assert (cache.stats.hits, cache.stats.misses, vae.images, dataset.images_decoded) == (2, 1, 1, 1)


@pytest.mark.parametrize("change", [{"vae_id": "vae-2"}, {"resolution": 96}])
def test_changed_settings_miss_the_cache(tmp_path, change):
    _images(tmp_path)
    _cache_latents(tmp_path)

    _, vae, cache = _cache_latents(tmp_path, **change)

    assert cache.stats.misses == 3 and vae.images == 3


def test_memory_cache_writes_nothing_and_decodes_each_image_once(tmp_path):
    _images(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    dataset, vae = _dataset(tmp_path), FakeVae()

    dataset.cache_latents(vae, "vae", TensorCache(), batch_size=4)
    for _ in range(3):
        [dataset[i] for i in range(len(dataset))]

    assert sorted(tmp_path.rglob("*")) == before
    assert vae.images == 3 and dataset.images_decoded == 3


def test_the_cache_folder_is_not_scanned_as_images(tmp_path):
    _images(tmp_path)
    _cache_latents(tmp_path)
    save_image(tmp_path / CACHE_DIR_NAME / "stray.png")

    assert [r.name for r in scan_dataset(tmp_path).records] == ["a.png", "b.jpg", "2_x/c.webp"]


def test_damaged_cache_file_is_encoded_again(tmp_path):
    _images(tmp_path)
    _, _, first = _cache_latents(tmp_path)
    victim = sorted(first.directory.glob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:10])

    _, vae, cache = _cache_latents(tmp_path)

    assert cache.stats.misses == 1 and vae.images == 1


def test_text_encoder_outputs_cached_by_caption_and_encoder(tmp_path):
    save_image(tmp_path / "a.png", caption="red")
    save_image(tmp_path / "b.png", caption="red")
    save_image(tmp_path / "c.png", caption="blue")
    calls: list[list[str]] = []

    def encode(captions):
        calls.append(captions)
        return {"hidden": torch.stack([torch.full((4, 2), float(len(c))) for c in captions]),
                "pooled": torch.stack([torch.tensor([float(ord(c[-1]))]) for c in captions])}

    def run(encoder_id="te-1"):
        dataset = _dataset(tmp_path, captions=CaptionOptions(trigger_word="sks"))
        cache = TensorCache(tmp_path / CACHE_DIR_NAME / "text")
        dataset.cache_text_encoder_outputs(encode, encoder_id, cache, batch_size=8)
        return dataset, cache

    dataset, cache = run()
    assert calls == [["sks, red", "sks, blue"]] and cache.stats.misses == 2
    batch = collate([dataset[0], dataset[2]])
    assert batch["text_encoder_outputs"]["hidden"].shape == (2, 4, 2)
    assert batch["text_encoder_outputs"]["pooled"].flatten().tolist() == [ord("d"), ord("e")]
    assert batch["caption"] == ["sks, red", "sks, blue"]

    calls.clear()
    _, cache = run()
    assert calls == [] and (cache.stats.hits, cache.stats.misses) == (2, 0)

    (tmp_path / "c.txt").write_text("green")
    _, cache = run()
    assert calls == [["sks, green"]]
    _, cache = run("te-2")
    assert cache.stats.misses == 2


def test_caches_refuse_settings_that_change_each_step(tmp_path):
    save_image(tmp_path / "a.png", caption="x")
    with pytest.raises(UserError, match="cache_latents .* crop: random or flip_aug"):
        _dataset(tmp_path, flip_aug=True).cache_latents(FakeVae(), "vae", TensorCache())
    with pytest.raises(UserError, match="cache_latents"):
        _dataset(tmp_path, random_crop=True).cache_latents(FakeVae(), "vae", TensorCache())
    with pytest.raises(UserError, match="shuffle_caption"):
        _dataset(tmp_path, captions=CaptionOptions(shuffle=True)).cache_text_encoder_outputs(
            lambda c: {}, "te", TensorCache())


def test_unwritable_dataset_folder_falls_back_with_a_warning(tmp_path):
    data, fallback = tmp_path / "data", tmp_path / "out" / "cache"
    data.mkdir()
    (data / CACHE_DIR_NAME).write_text("a file where the cache folder would go")

    folder, warning = choose_cache_dir(data, fallback)

    assert folder == fallback and folder.is_dir()
    assert str(data / CACHE_DIR_NAME) in warning and str(fallback) in warning
    assert choose_cache_dir(tmp_path / "other", fallback) == (tmp_path / "other" / CACHE_DIR_NAME, None)
    (tmp_path / "blocked").write_text("file")
    with pytest.raises(UserError, match="Cannot write the cache"):
        choose_cache_dir(data, tmp_path / "blocked" / "cache")


def test_a_cache_entry_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "entry.safetensors"
    replace_file(target, b"old")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        replace_file(target, b"new")
    monkeypatch.undo()

    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["entry.safetensors"]
    replace_file(target, b"new")
    assert target.read_bytes() == b"new"


def test_full_disk_is_a_user_error_naming_the_folder(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "replace_file", full)
    cache = TensorCache(tmp_path / "c")
    with pytest.raises(UserError, match="No space left on device"):
        cache.put("k", {"x": torch.zeros(1)})
