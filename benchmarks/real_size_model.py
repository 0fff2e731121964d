"""Write a real-size SD1.5 / SD2.1 / SDXL checkpoint with random weights, for speed and memory figures.

    .venv/bin/python benchmarks/real_size_model.py sd1 /tmp/sd15-random.safetensors
    .venv/bin/python benchmarks/real_size_model.py sd1 /tmp/sd15.safetensors --dtype float32 --diffusers /tmp/sd15

The file has the original (ldm) key layout and the public models' exact shapes, so the trainer
loads it through the same single-file path as a downloaded checkpoint; only the weights are
random (normal, std 0.02), which changes nothing in steps/s or memory. `--diffusers DIR` also
writes the same weights as a diffusers folder, for diffusers' training examples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_train.fixtures.real_size import save_random_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch", choices=("sd1", "sd2", "sdxl"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    parser.add_argument("--diffusers", type=Path, help="also write the same weights as a diffusers folder here")
    args = parser.parse_args()
    print(save_random_checkpoint(args.arch, args.out, getattr(torch, args.dtype), diffusers_folder=args.diffusers))


if __name__ == "__main__":
    main()
