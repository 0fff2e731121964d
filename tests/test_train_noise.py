"""The diffusion targets and loss weights, checked against the schedule's own formulas."""

import torch
from diffusers import DDPMScheduler

from lora_train.train.noise import (diffusion_loss, sample_noise, snr_weights, training_scheduler,
                                    training_target)


def scheduler(prediction_type: str) -> DDPMScheduler:
    return DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         prediction_type=prediction_type)


def test_v_prediction_target_is_the_velocity():
    sched = scheduler("v_prediction")
    latents, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    timesteps = torch.tensor([0, 500, 999])
    alpha_bar = sched.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    expected = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * latents
    torch.testing.assert_close(training_target(sched, latents, noise, timesteps), expected)
    torch.testing.assert_close(training_target(sched, latents, noise, timesteps),
                               sched.get_velocity(latents, noise, timesteps))
    assert torch.equal(training_target(scheduler("epsilon"), latents, noise, timesteps), noise)


def test_min_snr_weights():
    timesteps = torch.tensor([10, 500, 990])
    for kind, denominator in (("epsilon", 0), ("v_prediction", 1)):
        sched = scheduler(kind)
        alpha_bar = sched.alphas_cumprod[timesteps]
        snr = alpha_bar / (1 - alpha_bar)
        expected = torch.minimum(snr, torch.full_like(snr, 5.0)) / (snr + denominator)
        torch.testing.assert_close(snr_weights(sched, timesteps, 5.0), expected.float(), rtol=1e-4, atol=1e-6)


def test_zero_terminal_snr_and_weights_stay_finite():
    sched = training_scheduler(scheduler("v_prediction"), zero_terminal_snr=True)
    assert sched.alphas_cumprod[-1] < 1e-6
    assert torch.isfinite(snr_weights(sched, torch.tensor([999, 0]), 5.0)).all()
    assert training_scheduler(scheduler("epsilon"), zero_terminal_snr=False).alphas_cumprod[-1] > 1e-3


def test_noise_offset_shifts_channels_and_weighted_loss():
    latents = torch.zeros(2, 4, 8, 8)
    plain = sample_noise(latents, torch.Generator().manual_seed(0), 0.0)
    offset = sample_noise(latents, torch.Generator().manual_seed(0), 0.5)
    shift = (offset - plain)
    assert torch.allclose(shift, shift[..., :1, :1].expand_as(shift)) and shift.abs().sum() > 0
    prediction, target = torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)
    assert diffusion_loss(prediction, target, None).item() == 1.0
    assert diffusion_loss(prediction, target, torch.tensor([1.0, 3.0])).item() == 2.0
