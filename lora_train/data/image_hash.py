"""Perceptual hashes of images, to find duplicates and near-duplicates in a dataset.

The hash is the difference hash (dHash): the image in grey, shrunk to 9x8 pixels, one bit per pair of
horizontal neighbours (is the left one brighter?), 64 bits in all. Two files of the same picture (re-saved,
resized, slightly recompressed) differ in a few bits; different pictures in about half of them. Its author
reads a Hamming distance of 0 as the same picture and up to 10 as a variation of it
(https://www.hackerfactor.com/blog/index.php?/archives/529-Kind-of-Like-That.html). The hash sees only
gradients, so flat pictures of different colours hash alike: two pictures are similar only when their average
colours are close too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from lora_train.core.errors import UserError
from lora_train.data.images import load_rgb

NEAR_DUPLICATE_BITS = 10  # at most this many of the 64 bits differ: the same picture, or a variation of it
NEAR_COLOUR = 16  # and no channel of the average colour differs by more than this (of 255)
_SIZE = (9, 8)


@dataclass(frozen=True)
class Fingerprint:
    hash: int  # the 64-bit dHash
    colour: tuple[int, ...]  # the average RGB

    def near(self, other: "Fingerprint") -> bool:
        return bin(self.hash ^ other.hash).count("1") <= NEAR_DUPLICATE_BITS and \
            max(abs(a - b) for a, b in zip(self.colour, other.colour)) <= NEAR_COLOUR


def fingerprint(path: Path, orientation: int = 1) -> Fingerprint | None:
    """The fingerprint of an image file (upright by `orientation`); None when it cannot be decoded."""
    try:
        image = load_rgb(path, orientation, draft=(64, 64))
    except UserError:  # changed or damaged since the scan
        return None
    pixels = np.asarray(image.convert("L").resize(_SIZE, Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    colour = tuple(int(v) for v in np.asarray(image.resize((8, 8)), dtype=np.float32).mean(axis=(0, 1)).round())
    return Fingerprint(int("".join("1" if bit else "0" for bit in bits), 2), colour)


def similar_groups(prints: Sequence[Fingerprint | None]) -> list[list[int]]:
    """Indices of the images whose fingerprints are near each other (linked in chains), groups of two or more, in
    first-seen order; images without a fingerprint are left out."""
    parent = list(range(len(prints)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, first in enumerate(prints):
        for j in range(i + 1, len(prints)):
            second = prints[j]
            if first is not None and second is not None and first.near(second):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(prints)):
        if prints[i] is not None:
            groups.setdefault(root(i), []).append(i)
    return [group for group in groups.values() if len(group) > 1]
