"""Batches drawn from one bucket at a time, reproducible per (seed, epoch) and resumable mid-epoch.

Each epoch every image appears `repeats` times; the appearances of each bucket are shuffled and cut
into batches (a bucket's last batch may be smaller, as in kohya), then the batches are shuffled.
Everything comes from a `random.Random` seeded with (seed, epoch), so the same seed and epoch give
the same batches on any machine, and `set_epoch(epoch, skip_batches=k)` resumes after batch k.
Each appearance also gets its own augmentation seed (`SampleKey.seed`), so repeats of an image
get different crops, flips and caption shuffles, and a resumed run gets the very same ones.

On several processes the sampler shards the epoch itself (`num_shards`, `shard`), whole batches
to each process, so a batch never mixes buckets and a resume knows exactly where each process
was. It also has no `batch_size` attribute, so accelerate's own sharding (`prepare`) would hand
out whole batches too.
"""

from __future__ import annotations

import math
import random
from typing import Iterator, NamedTuple, Sequence


class SampleKey(NamedTuple):
    index: int  # the image's index in the dataset
    seed: int  # seeds the random choices (caption, crop, flip) for this appearance


def epoch_batches(bucket_ids: Sequence[int], repeats: Sequence[int], batch_size: int, seed: int,
                  epoch: int) -> list[list[SampleKey]]:
    """All batches of one epoch, in order."""
    rng = random.Random(f"lora_train/batches/{seed}/{epoch}")
    by_bucket: dict[int, list[SampleKey]] = {}
    for index, (bucket, count) in enumerate(zip(bucket_ids, repeats)):
        by_bucket.setdefault(bucket, []).extend(SampleKey(index, rng.getrandbits(63)) for _ in range(count))
    batches = []
    for bucket in sorted(by_bucket):
        keys = by_bucket[bucket]
        rng.shuffle(keys)
        batches += [keys[start : start + batch_size] for start in range(0, len(keys), batch_size)]
    rng.shuffle(batches)
    return batches


class BucketBatchSampler:
    """A torch `batch_sampler`: call `set_epoch` before each epoch (and with `skip_batches` to resume).

    With several processes (`num_shards`), process `shard` takes every num_shards-th batch of the
    epoch, the list padded by repeating its first batches so that every process gets as many;
    `skip_batches` then counts batches of the whole epoch (a multiple of num_shards).
    """

    def __init__(self, bucket_ids: Sequence[int], repeats: Sequence[int], batch_size: int, seed: int,
                 num_shards: int = 1, shard: int = 0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0 <= shard < num_shards:
            raise ValueError("shard must be in [0, num_shards)")
        self.bucket_ids, self.repeats = list(bucket_ids), list(repeats)
        self._batch_size, self.seed = batch_size, seed
        self.num_shards, self.shard = num_shards, shard
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def batches_per_epoch(self) -> int:
        counts: dict[int, int] = {}
        for bucket, count in zip(self.bucket_ids, self.repeats):
            counts[bucket] = counts.get(bucket, 0) + count
        return sum(math.ceil(count / self._batch_size) for count in counts.values())

    def batches_per_shard(self) -> int:
        """Batches each process takes per epoch."""
        return math.ceil(self.batches_per_epoch() / self.num_shards)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        batches = epoch_batches(self.bucket_ids, self.repeats, self._batch_size, self.seed, self.epoch)
        padded = [batches[i % len(batches)] for i in range(self.batches_per_shard() * self.num_shards)]
        return iter(padded[self.skip_batches + self.shard :: self.num_shards])

    def __len__(self) -> int:
        return max(0, self.batches_per_shard() - self.skip_batches // self.num_shards)
