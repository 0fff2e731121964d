"""Python's cyclic garbage collector around a job: off while it imports and loads, then told to leave
what was built alone until the job ends.

Importing torch, diffusers and transformers and building a model make millions of objects that live
as long as the job. With the collector on, every full collection during the start scans all of them
again, and so do the collections while training and the final ones at exit: measured on the tiny SD1
job (2-core CPU) that was 1.1 s of a 3.9 s import and 1.3 s of exit.

- `collector_paused()`: nothing is collected inside the block; at its end one collection frees the
  block's cyclic garbage (a model load's may hold tensors) and `gc.freeze` moves the rest out of the
  collector's view. Imports leave a few thousand small objects of garbage, and that collection would
  scan everything they built (0.36 s), so they skip it (`collect=False`).
- `release_frozen()`: the job is over; what it froze can be collected again in a process that goes on.
- `exit_without_scanning()`: the process is about to end; its last collections skip what it holds.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused(collect: bool = True) -> Iterator[None]:
    """No cyclic collection inside the block; after it, its garbage collected once (`collect`) and the
    rest frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collect:
            gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()


def release_frozen() -> None:
    """Back in the collector's view, all that was frozen: for a process that goes on after the job."""
    gc.unfreeze()


def exit_without_scanning() -> None:
    """For a process about to end: its last collections need not scan the objects it still holds (1.3 s with
    torch and diffusers imported)."""
    gc.freeze()
