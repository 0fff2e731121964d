"""Numerical and memory faults (the NaN stop is in test_train_image.py): an fp16 gradient overflow is
handled by the loss scaler (the step is skipped, the scale drops, training goes on); running out of GPU
memory, in the loop or before it, ends the job with the low-VRAM advice, no traceback, and the lock
released."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import AutoencoderKL

from corpus import settings_for, write_config
from lora_train.core.errors import UserError
from lora_train.train.resume_state import load_checkpoint
from reliability_support import assert_clean_error, run_cli
from train_support import train

pytestmark = pytest.mark.slow

LOW_VRAM = r"Use the low VRAM preset \(batch_size: 1, .*gradient_checkpointing: true, .*\), or lower resolution"


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


class InfiniteGradient(torch.autograd.Function):
    """The identity, whose gradient overflows: what an fp16 backward pass does when the loss scale is too high."""

    @staticmethod
    def forward(ctx, loss):
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_an_fp16_overflow_skips_its_step_lowers_the_scale_and_training_goes_on(tiny_sd1_file, tmp_path, monkeypatch):
    import lora_train.train.step as trainer

    calls, real = itertools.count(1), trainer.diffusion_loss

    def overflowing_at_step_2(prediction, target, weights):
        loss = real(prediction, target, weights)
        return InfiniteGradient.apply(loss) if next(calls) == 2 else loss

    monkeypatch.setattr(trainer, "diffusion_loss", overflowing_at_step_2)
    path, events = train(tiny_sd1_file, tmp_path / "out", max_train_steps=3, save_steps=1, mixed_precision="fp16")

    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3] and events[-1]["type"] == "done"
    (params1, state1), (params2, state2), (params3, state3) = [
        load_checkpoint(tmp_path / "out" / f"checkpoint-my_lora-{step}") for step in (1, 2, 3)]
    assert state2["scaler"]["scale"] == state1["scaler"]["scale"] / 2 == state3["scaler"]["scale"]
    assert all(torch.equal(params1[k], params2[k]) for k in params1), "the overflowing step must change nothing"
    assert not all(torch.equal(params2[k], params3[k]) for k in params2), "training must go on after it"
    assert path.exists()


def test_out_of_gpu_memory_in_the_loop_ends_with_the_low_vram_advice(tiny_sd1_file, tmp_path):
    config = write_config(tmp_path / "job.yaml", settings_for(tmp_path, tiny_sd1_file))

    outcome = run_cli(config, tmp_path, fault="oom")

    assert_clean_error(outcome, r"Out of GPU memory after 0 training steps \(resolution 64, batch_size 2\)\. "
                                + LOW_VRAM)
    assert not (tmp_path / "lora_train.cpu.lock").exists()


def test_out_of_gpu_memory_while_caching_latents_gets_the_same_advice(tiny_sd1_file, tmp_path, monkeypatch):
    def encode(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    monkeypatch.setattr(AutoencoderKL, "encode", encode)
    with pytest.raises(UserError, match=r"Out of GPU memory before training started \(loading the model or caching "
                                        r"latents\) \(resolution 64, batch_size 2\)\. " + LOW_VRAM):
        train(tiny_sd1_file, tmp_path / "out", max_train_steps=1)
    assert not (tmp_path / "lora_train.cpu.lock").exists()
