"""Write a real-size SD1.5 / SD2.1 / SDXL checkpoint with random weights, for speed and memory figures.

    .venv/bin/python benchmarks/real_size_model.py sd1 /tmp/sd15-random.safetensors

The file has the original (ldm) key layout and the public models' exact shapes, so the trainer
loads it through the same single-file path as a downloaded checkpoint; only the weights are
random (normal, std 0.02), which changes nothing in steps/s or memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_train.fixtures.checkpoints import ldm_state_dict  # noqa: E402
from lora_train.fixtures.real_size import real_size_model  # noqa: E402


def materialize(module: torch.nn.Module, generator: torch.Generator, dtype: torch.dtype) -> None:
    module.to_empty(device="cpu").to(dtype)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("weight") and param.dim() == 1:
                param.fill_(1.0)  # norm scales
            elif param.dim() == 1:
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch", choices=("sd1", "sd2", "sdxl"))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    model = real_size_model(args.arch)
    generator = torch.Generator().manual_seed(0)
    for module in [model.unet, model.vae, *model.text_encoders]:
        materialize(module, generator, torch.float16)
    save_file({k: v.contiguous() for k, v in ldm_state_dict(model).items()}, str(args.out))
    print(args.out)


if __name__ == "__main__":
    main()
