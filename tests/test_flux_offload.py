"""CPU-offloaded activation checkpoints (`cpu_offload_checkpointing`): every checkpointed block's inputs go through
the offload device, a run gives the same losses as plain gradient checkpointing, and the settings it needs are
checked."""

from __future__ import annotations

import pytest
import torch

from lora_train.core.errors import UserError
from lora_train.dit.offload_checkpoints import OffloadedCheckpoints
from lora_train.fixtures.tiny_flux import tiny_flux
from train_support import train

FLUX_FAST = {"t5xxl_max_token_length": 16, "train_text_encoder": False, "sample_steps": 0}


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def test_each_checkpointed_block_s_inputs_are_offloaded():
    transformer = tiny_flux("flux-dev").transformer.train()
    transformer.enable_gradient_checkpointing()
    offload = OffloadedCheckpoints(transformer)
    inputs = dict(hidden_states=torch.randn(1, 16, 64, requires_grad=True), encoder_hidden_states=torch.randn(1, 8, 40),
                  pooled_projections=torch.randn(1, 128), timestep=torch.tensor([0.5]), guidance=torch.ones(1),
                  img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3), return_dict=False)
    transformer(**inputs)[0].mean().backward()
    assert offload.offloaded == 5 * 3  # 2 double + 3 single blocks: the two streams and the modulation vector
    assert inputs["hidden_states"].grad is not None and inputs["hidden_states"].grad.abs().sum() > 0


@pytest.mark.slow
def test_the_losses_are_those_of_plain_checkpointing(tiny_flux_files, tmp_path):
    model = tiny_flux_files("flux-dev").transformer
    losses = {}
    for offload in (False, True):
        _, events = train(model, tmp_path / f"offload-{offload}", max_train_steps=3, gradient_checkpointing=True,
                          cpu_offload_checkpointing=offload, **FLUX_FAST)
        losses[offload] = [event["loss"] for event in events if event["type"] == "step"]
        assert any("in CPU memory (cpu_offload_checkpointing)" in e.get("message", "") for e in events) == offload
    assert len(losses[True]) == 3 and losses[True] == pytest.approx(losses[False], rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("settings, message", [
    ({}, r"cpu_offload_checkpointing .* needs gradient_checkpointing: true"),
    ({"gradient_checkpointing": True, "blocks_to_swap": 1}, r"cpu_offload_checkpointing cannot be used with "
                                                            r"blocks_to_swap"),
])
def test_what_it_needs_is_checked(tiny_flux_files, tmp_path, settings, message):
    with pytest.raises(UserError, match=message):
        train(tiny_flux_files("flux-dev").transformer, tmp_path / "out", max_train_steps=1,
              cpu_offload_checkpointing=True, **{**FLUX_FAST, **settings})
