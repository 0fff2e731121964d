"""FLOPs of one training step of a real-size UNet, counted on the meta device (no memory, no GPU).

    python benchmarks/flops.py sd1 512 4      # prints the forward FLOPs of one batch

MFU in the benchmark = 3 x forward FLOPs per step / step time / the GPU's peak: the usual
convention (forward + backward); the frozen weights get no gradient, so the work actually
done is nearer 2x forward, and the MFU shown is the conventional, slightly flattering one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_train.fixtures.real_size import real_size_model  # noqa: E402


def forward_flops(arch: str, resolution: int, batch: int) -> int:
    unet = real_size_model(arch).unet.to("meta")
    size = resolution // 8
    latents = torch.empty(batch, 4, size, size, device="meta")
    timesteps = torch.zeros(batch, dtype=torch.long, device="meta")
    context = torch.empty(batch, 77, unet.config.cross_attention_dim, device="meta")
    extra = {}
    if arch == "sdxl":
        extra["added_cond_kwargs"] = {"text_embeds": torch.empty(batch, 1280, device="meta"),
                                      "time_ids": torch.empty(batch, 6, device="meta")}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(latents, timesteps, encoder_hidden_states=context, **extra)
    return counter.get_total_flops()


if __name__ == "__main__":
    print(forward_flops(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
