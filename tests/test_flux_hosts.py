"""Our Flux LoRA file in the hosts' own LoRA code: every key mapped, and the weights the host patches equal an
independent merge (the LoRA layers' own update, on BFL's layout).

Forge: set LORA_TRAIN_FORGE_DIR to a stable-diffusion-webui-forge checkout (its Python dependencies importable,
e.g. einops and sentencepiece); `forge_lora_probe.py` runs Forge's loader on a tiny Flux.1-dev built in Forge's
own class, in a subprocess. Skipped, saying so, when the variable is not set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from flux_tools_support import expected_bfl, save_flux_lora
from safetensors.torch import load_file

from lora_train.fixtures.flux_files import transformer_bfl
from lora_train.fixtures.tiny_flux import T5_WIDTH, CLIP_WIDTH, tiny_flux

FORGE = os.environ.get("LORA_TRAIN_FORGE_DIR")
PROBE = Path(__file__).with_name("forge_lora_probe.py")
# Forge's IntegratedFluxTransformer2DModel of the tiny Flux.1-dev's shape (in_channels: latent channels, x4 inside)
FORGE_ARGS = dict(in_channels=16, vec_in_dim=CLIP_WIDTH, context_in_dim=T5_WIDTH, hidden_size=96, mlp_ratio=4.0,
                  num_heads=3, depth=2, depth_single_blocks=3, axes_dim=[4, 14, 14], theta=10000, qkv_bias=True,
                  guidance_embed=True)


@pytest.mark.skipif(not FORGE, reason="LORA_TRAIN_FORGE_DIR is not set: it names a stable-diffusion-webui-forge "
                                      "checkout whose LoRA loader this test runs")
@pytest.mark.parametrize("rank", [2, 5])
def test_forge_maps_every_key_and_patches_the_independent_merge(tmp_path, rank):
    base = tmp_path / "flux1-dev-tiny.safetensors"
    from safetensors.torch import save_file

    save_file(transformer_bfl(tiny_flux("flux-dev")), str(base))
    lora, model = save_flux_lora(tmp_path, "ours", "flux-dev", rank, rank / 2)
    out = tmp_path / "patched.safetensors"
    done = subprocess.run([sys.executable, str(PROBE), FORGE, json.dumps(FORGE_ARGS), str(base), str(lora), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in load_file(lora)}
    assert report["unmatched"] == [] and report["patches"] == report["patched"] == len(modules)
    patched, expected = load_file(out), expected_bfl("flux-dev", model)
    assert patched.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(patched[key], expected[key].detach(), rtol=0, atol=2e-6, msg=key)
