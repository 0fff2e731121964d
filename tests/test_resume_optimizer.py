"""A checkpoint resumes under another optimizer than the one that saved it: exactly where the moments
are the same numbers under other names (bitsandbytes' 32-bit AdamW state, which `adamw8bit` runs
saved before it moved to torch's fused AdamW), with fresh moments and a warning otherwise."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from train_support import train

SETTINGS = dict(max_train_steps=4, save_steps=2, train_text_encoder=False, sample_steps=0)


def losses(events: list[dict]) -> list[float]:
    return [e["loss"] for e in events if e["type"] == "step"]


def messages(events: list[dict]) -> str:
    return "\n".join(e.get("message", "") for e in events if e["type"] == "log")


@pytest.mark.slow
def test_an_older_bitsandbytes_checkpoint_resumes_exactly_with_the_fused_adamw(tiny_sd1_file, tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes")
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    saved_by_bnb = dict(SETTINGS, optimizer="adamw8bit", optimizer_args={"min_8bit_size": 4096})  # bitsandbytes
    straight, straight_events = train(tiny_sd1_file, tmp_path / "a", **saved_by_bnb)
    train(tiny_sd1_file, tmp_path / "b", stop_at_step=2, **saved_by_bnb)
    state_file = tmp_path / "b" / "checkpoint-my_lora-2" / "training_state.pt"
    state = torch.load(state_file, weights_only=True)
    assert state.pop("optimizer_kind").startswith("bitsandbytes")
    torch.save(state, state_file)  # as checkpoints were written before the kind was recorded

    resumed, events = train(tiny_sd1_file, tmp_path / "b", resume_from_checkpoint="latest",
                            **dict(SETTINGS, optimizer="adamw8bit"))  # torch's fused AdamW now
    assert "carried over to torch's AdamW" in messages(events)
    assert losses(events) == pytest.approx(losses(straight_events)[2:], rel=1e-4, abs=1e-6)
    expected, got = load_file(str(straight)), load_file(str(resumed))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.slow
def test_a_checkpoint_resumed_with_another_optimizer_starts_its_moments_again_and_says_so(tiny_sd1_file, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    train(tiny_sd1_file, tmp_path / "b", stop_at_step=2, **dict(SETTINGS, optimizer="adamw"))
    resumed, events = train(tiny_sd1_file, tmp_path / "b", resume_from_checkpoint="latest",
                            **dict(SETTINGS, optimizer="adafactor"))
    assert "saved with the optimizer torch.optim.adamw.AdamW; this run uses" in messages(events)
    assert "moments start again" in messages(events)
    assert [e["step"] for e in events if e["type"] == "step"] == [3, 4] and resumed.exists()
