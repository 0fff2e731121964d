"""`python -m lora_train` with one fault planted, for the reliability tests (test code only):

    python tests/patched_cli.py FAULT MARKER -- train --config job.yaml ...

FAULT is one of
    pause-lora-save:N    the N-th LoRA file write stops with its temporary file half written
    pause-checkpoint:N   the N-th training-state write stops with the file half written
    oom                  the UNet's forward pass raises torch.cuda.OutOfMemoryError, as a full GPU does
A paused process writes its pid into the MARKER file and sleeps, so a test that waits for the
marker and then sends SIGKILL kills it inside the save, every time.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path


def pause(marker: Path) -> None:
    marker.write_text(str(os.getpid()))
    time.sleep(600)


def on_nth(nth: int):
    """A counter: each call says whether it is the N-th."""
    count = 0

    def is_nth() -> bool:
        nonlocal count
        count += 1
        return count == nth
    return is_nth


def pause_lora_save(nth: int, marker: Path) -> None:
    from lora_train.kohya import write as save

    real, is_nth = save.write_new_file, on_nth(nth)

    def write_new_file(path, write):
        if Path(path).suffix != ".safetensors" or not is_nth():
            return real(path, write)

        def half_then_pause(temporary: Path) -> None:
            write(temporary)
            data = temporary.read_bytes()
            temporary.write_bytes(data[: len(data) // 2])
            pause(marker)
        return real(path, half_then_pause)
    save.write_new_file = write_new_file


def pause_checkpoint(nth: int, marker: Path) -> None:
    import torch

    real, is_nth = torch.save, on_nth(nth)

    def save(obj, handle, *args, **kwargs):
        if not is_nth():
            return real(obj, handle, *args, **kwargs)
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        handle.write(buffer.getvalue()[: buffer.tell() // 2])
        handle.flush()
        pause(marker)
    torch.save = save


def out_of_memory(_nth: int, _marker: Path) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    def forward(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    UNet2DConditionModel.forward = forward


FAULTS = {"pause-lora-save": pause_lora_save, "pause-checkpoint": pause_checkpoint, "oom": out_of_memory}

if __name__ == "__main__":
    fault, marker, separator, *argv = sys.argv[1:]
    assert separator == "--", __doc__
    name, _, nth = fault.partition(":")
    FAULTS[name](int(nth or 0), Path(marker))
    from lora_train.cli import main

    raise SystemExit(main(argv))
