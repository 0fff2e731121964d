"""Batches drawn from one bucket at a time, reproducible per (seed, epoch) and resumable mid-epoch.

Each epoch every image appears `repeats` times; the appearances of each bucket are shuffled and cut
into batches (a bucket's last batch may be smaller, as in kohya), then the batches are shuffled.
Everything comes from a `random.Random` seeded with (seed, epoch), so the same seed and epoch give
the same batches on any machine, and `set_epoch(epoch, skip_batches=k)` resumes after batch k.
Each appearance also gets its own augmentation seed (`SampleKey.seed`), so repeats of an image
get different crops, flips and caption shuffles, and a resumed run gets the very same ones.

The sampler deliberately has no `batch_size` attribute: accelerate then treats its batches as
variable-length lists and, on several processes, hands out (and pads with) whole batches, so a
batch never mixes buckets.
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
    """A torch `batch_sampler`: call `set_epoch` before each epoch (and with `skip_batches` to resume)."""

    def __init__(self, bucket_ids: Sequence[int], repeats: Sequence[int], batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.bucket_ids, self.repeats = list(bucket_ids), list(repeats)
        self._batch_size, self.seed = batch_size, seed
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def batches_per_epoch(self) -> int:
        counts: dict[int, int] = {}
        for bucket, count in zip(self.bucket_ids, self.repeats):
            counts[bucket] = counts.get(bucket, 0) + count
        return sum(math.ceil(count / self._batch_size) for count in counts.values())

    def __iter__(self) -> Iterator[list[SampleKey]]:
        batches = epoch_batches(self.bucket_ids, self.repeats, self._batch_size, self.seed, self.epoch)
        return iter(batches[self.skip_batches :])

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip_batches)
