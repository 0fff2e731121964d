"""The torch Dataset through a DataLoader: single-bucket batches, reproducible, resumable."""

from __future__ import annotations

import pickle

import torch
from test_data_helpers import save_image
from torch.utils.data import DataLoader

from lora_train.data.buckets import BucketSettings, plan_buckets
from lora_train.data.captions import CaptionOptions
from lora_train.data.dataset import ImageDataset, ItemOptions, collate
from lora_train.data.sampler import BucketBatchSampler, SampleKey
from lora_train.data.scan import scan_dataset

SIZES = [(64, 64), (96, 48), (48, 96), (70, 70), (100, 50), (50, 100), (64, 60)]


def _loader(root, epoch=0, skip=0, seed=11):
    index = scan_dataset(root, trigger_word="sks")
    plan = plan_buckets([r.size for r in index.records], [r.name for r in index.records],
                        BucketSettings(64, min_bucket_reso=32, max_bucket_reso=128, bucket_reso_steps=32))
    options = ItemOptions(CaptionOptions("sks", shuffle=True, keep_tokens=1, dropout_rate=0.2),
                          random_crop=True, flip_aug=True)
    dataset = ImageDataset(index.records, plan, options)
    sampler = BucketBatchSampler(plan.bucket_ids, [r.repeats for r in index.records], batch_size=2, seed=seed)
    sampler.set_epoch(epoch, skip_batches=skip)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate), dataset


def _make(root):
    for i, size in enumerate(SIZES):
        save_image(root / f"{i}.png", size=size, color=(30 * i, 200 - 20 * i, 90), caption=f"tag{i}, a, b, c, d")
    save_image(root / "3_more" / "x.jpg", size=(80, 40), caption="wide, e, f")


def _summary(loader):
    return [(batch["index"].tolist(), batch["caption"], batch["pixel_values"].sum().item(),
             batch["crop_top_left"].tolist()) for batch in loader]


def test_batches_hold_one_bucket_and_all_fields(tmp_path):
    _make(tmp_path)
    loader, dataset = _loader(tmp_path)
    seen = []
    for batch in loader:
        indices = batch["index"].tolist()
        seen += indices
        assert len({dataset.plan.bucket_ids[i] for i in indices}) == 1
        bucket_w, bucket_h = dataset.plan.assignments[indices[0]].bucket
        assert batch["pixel_values"].shape == (len(indices), 3, bucket_h, bucket_w)
        assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
        assert batch["target_size"].tolist() == [[bucket_h, bucket_w]] * len(indices)
        assert batch["original_size"].tolist() == [[dataset.records[i].size[1], dataset.records[i].size[0]]
                                                   for i in indices]
        assert batch["crop_top_left"].shape == (len(indices), 2)
        for caption in batch["caption"]:
            assert caption == "" or caption.startswith("sks, ")
    assert sorted(seen) == sorted(list(range(len(SIZES))) + [len(SIZES)] * 3)


def test_same_seed_and_epoch_give_the_same_batches_and_augmentations(tmp_path):
    _make(tmp_path)

    first = _summary(_loader(tmp_path)[0])

    assert first == _summary(_loader(tmp_path)[0])
    assert first != _summary(_loader(tmp_path, epoch=1)[0])
    assert len({caption for _, captions, _, _ in first for caption in captions}) > 5


def test_resuming_mid_epoch_continues_with_the_very_same_batches(tmp_path):
    _make(tmp_path)
    full = _summary(_loader(tmp_path, epoch=2)[0])

    resumed = _summary(_loader(tmp_path, epoch=2, skip=3)[0])

    assert resumed == full[3:]


def test_repeats_of_one_image_get_their_own_augmentation(tmp_path):
    save_image(tmp_path / "40_x" / "a.png", size=(64, 64), caption="a, b, c, d, e, f")
    loader, _ = _loader(tmp_path)

    captions = [caption for batch in loader for caption in batch["caption"]]

    assert len(captions) == 40 and len(set(captions)) > 10


def test_plain_index_access_and_pickling_for_workers(tmp_path):
    _make(tmp_path)
    _, dataset = _loader(tmp_path)

    item = dataset[0]
    assert set(item) == {"index", "caption", "pixel_values", "original_size", "crop_top_left", "target_size"}
    assert torch.equal(dataset[SampleKey(0, 5)]["pixel_values"], dataset[SampleKey(0, 5)]["pixel_values"])
    assert len(pickle.loads(pickle.dumps(dataset))) == len(dataset) == len(SIZES) + 1
