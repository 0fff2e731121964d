"""Aspect-ratio buckets (kohya's values), no-upscale, and the single-bucket, resumable batch sampler."""

from __future__ import annotations

from collections import Counter

import pytest

from lora_train.data.buckets import BucketSettings, assign_bucket, bucket_resolutions, plan_buckets
from lora_train.data.sampler import BucketBatchSampler, epoch_batches
from lora_train.core.errors import UserError

# kohya's make_bucket_resolutions((512, 512), 256, 1024, 64)
KOHYA_512 = [(256, 832), (256, 896), (256, 960), (256, 1024), (320, 704), (320, 768), (384, 640), (448, 576),
             (512, 512), (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256),
             (1024, 256)]
SIZES = [(512, 512), (1920, 1080), (1080, 1920), (600, 400), (3000, 1000), (333, 777), (100, 80), (4000, 4000)]


def test_bucket_resolutions_are_kohyas():
    settings = BucketSettings(512)
    resolutions = bucket_resolutions(settings)

    assert resolutions == KOHYA_512
    for width, height in bucket_resolutions(BucketSettings(1024, max_bucket_reso=2048)):
        assert width * height <= 1024 * 1024 and width % 64 == 0 and height % 64 == 0
        assert 256 <= width <= 2048 and 256 <= height <= 2048


def test_each_image_gets_the_closest_aspect_ratio_and_is_resized_to_cover_it():
    settings = BucketSettings(512)
    resolutions = bucket_resolutions(settings)
    for width, height in SIZES:
        assignment = assign_bucket((width, height), settings, resolutions)
        bucket_w, bucket_h = assignment.bucket
        best = min(abs(w / h - width / height) for w, h in resolutions)
        assert abs(bucket_w / bucket_h - width / height) == best
        resized_w, resized_h = assignment.resized
        assert resized_w >= bucket_w and resized_h >= bucket_h
        assert (resized_w == bucket_w) or (resized_h == bucket_h)
        assert abs(resized_w / resized_h - width / height) < 0.01


def test_known_assignments():
    settings = BucketSettings(512)
    resolutions = bucket_resolutions(settings)

    assert assign_bucket((1920, 1080), settings, resolutions).bucket == (640, 384)
    assert assign_bucket((1920, 1080), settings, resolutions).resized == (683, 384)
    assert assign_bucket((448, 576), settings, resolutions).resized == (448, 576)


def test_no_upscale_never_enlarges_and_keeps_the_aspect_ratio():
    settings = BucketSettings(512, bucket_no_upscale=True)
    plan = plan_buckets(SIZES, [f"{w}x{h}" for w, h in SIZES], settings)

    for (width, height), assignment in zip(SIZES, plan.assignments):
        bucket_w, bucket_h = assignment.bucket
        assert assignment.resized[0] <= width and assignment.resized[1] <= height
        assert bucket_w <= assignment.resized[0] and bucket_h <= assignment.resized[1]
        assert bucket_w % 64 == 0 and bucket_h % 64 == 0
        assert bucket_w * bucket_h <= 512 * 512
        assert abs(assignment.resized[0] / assignment.resized[1] - width / height) < 0.01
    small = plan.assignments[SIZES.index((333, 777))]
    assert small.bucket == (320, 768) and small.resized == (333, 777)
    assert plan.warnings == []


def test_images_smaller_than_the_training_size_are_reported_unless_no_upscale():
    plan = plan_buckets([(100, 100), (2000, 2000)], ["small.png", "big.png"], BucketSettings(512))

    assert len(plan.warnings) == 1
    assert "small.png (100x100 -> 512x512)" in plan.warnings[0] and "bucket_no_upscale" in plan.warnings[0]
    assert "big.png" not in plan.warnings[0]
    assert plan_buckets([(200, 200)], ["small.png"], BucketSettings(512, bucket_no_upscale=True)).warnings == []


def test_an_image_smaller_than_one_step_still_gets_a_bucket():
    plan = plan_buckets([(40, 200)], ["thin.png"], BucketSettings(512, bucket_no_upscale=True))

    assert plan.assignments[0].bucket == (64, 192)
    assert "thin.png" in plan.warnings[0]


def test_without_bucketing_everything_is_square():
    settings = BucketSettings(256, enable_bucket=False, bucket_no_upscale=True)
    plan = plan_buckets(SIZES, [str(s) for s in SIZES], settings)

    assert plan.buckets == [(256, 256)] and set(plan.bucket_ids) == {0}
    assert plan.assignments[SIZES.index((1920, 1080))].resized == (455, 256)


def test_plan_groups_images_by_bucket():
    plan = plan_buckets([(600, 400), (1920, 1080), (610, 400), (512, 512)], list("abcd"), BucketSettings(512))

    assert plan.buckets == sorted(set(plan.buckets))
    assert plan.bucket_ids[0] == plan.bucket_ids[2] != plan.bucket_ids[3]
    assert [plan.buckets[i] for i in plan.bucket_ids] == [a.bucket for a in plan.assignments]


@pytest.mark.parametrize("settings, message", [
    (BucketSettings(512, min_bucket_reso=1024, max_bucket_reso=512), "min_bucket_reso"),
    (BucketSettings(1024, max_bucket_reso=768), "max_bucket_reso \\(768\\) is smaller than resolution"),
])
def test_inconsistent_bucket_settings_are_user_errors(settings, message):
    with pytest.raises(UserError, match=message):
        bucket_resolutions(settings)


BUCKET_IDS = [0, 0, 1, 2, 1, 0, 2, 2, 2, 1]
REPEATS = [1, 3, 2, 1, 1, 2, 1, 1, 4, 1]


def test_batches_are_single_bucket_and_cover_every_repeat():
    batches = epoch_batches(BUCKET_IDS, REPEATS, 3, seed=5, epoch=0)

    for batch in batches:
        assert len({BUCKET_IDS[key.index] for key in batch}) == 1
        assert 1 <= len(batch) <= 3
    assert Counter(key.index for batch in batches for key in batch) == dict(enumerate(REPEATS))
    assert len({key.seed for batch in batches for key in batch}) == sum(REPEATS)


def test_batches_are_deterministic_per_seed_and_epoch():
    def run(seed, epoch):
        return epoch_batches(BUCKET_IDS, REPEATS, 2, seed, epoch)

    assert run(1, 0) == run(1, 0)
    assert run(1, 0) != run(1, 1)
    assert run(1, 0) != run(2, 0)


def test_sampler_resumes_mid_epoch_exactly():
    sampler = BucketBatchSampler(BUCKET_IDS, REPEATS, 2, seed=9)
    sampler.set_epoch(3)
    full = list(sampler)
    assert len(full) == len(sampler) == sampler.batches_per_epoch() == 3 + 2 + 4

    resumed = BucketBatchSampler(BUCKET_IDS, REPEATS, 2, seed=9)
    resumed.set_epoch(3, skip_batches=5)

    assert list(resumed) == full[5:] and len(resumed) == 4
    resumed.set_epoch(4)
    assert len(list(resumed)) == 9



@pytest.mark.parametrize("processes", [2, 3])
def test_accelerate_sharding_keeps_batches_whole_and_ranks_even(processes):
    from accelerate.data_loader import BatchSamplerShard

    sampler = BucketBatchSampler(BUCKET_IDS, REPEATS, 2, seed=1)
    shards = [list(BatchSamplerShard(sampler, processes, rank)) for rank in range(processes)]

    assert len({len(shard) for shard in shards}) == 1
    whole = [tuple(batch) for batch in sampler]
    for shard in shards:
        for batch in shard:
            assert tuple(batch) in whole
    assert {tuple(b) for shard in shards for b in shard} == set(whole)


@pytest.mark.parametrize("shards", [2, 3])
def test_own_sharding_splits_whole_batches_evenly_and_resumes(shards):
    buckets, repeats = [0, 0, 1, 1, 1, 2, 0], [1, 2, 1, 1, 3, 1, 1]
    whole = epoch_batches(buckets, repeats, 2, seed=5, epoch=1)
    samplers = [BucketBatchSampler(buckets, repeats, 2, seed=5, num_shards=shards, shard=i) for i in range(shards)]
    for sampler in samplers:
        sampler.set_epoch(1)
    parts = [list(sampler) for sampler in samplers]
    assert len({len(part) for part in parts}) == 1 and len(parts[0]) == samplers[0].batches_per_shard()
    taken = [batch for i in range(len(parts[0])) for part in parts for batch in part[i:i + 1]]
    assert taken[:len(whole)] == whole, "round-robin over the epoch's batches, padded at the end"
    for sampler, part in zip(samplers, parts):
        sampler.set_epoch(1, skip_batches=shards)  # one round done by every process
        assert list(sampler) == part[1:] and len(sampler) == len(part) - 1
