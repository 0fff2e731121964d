"""Every optimizer and schedule by its config name: each trains, groups keep their own rates."""

import pytest
import torch

from lora_train.config.schema import OPTIMIZERS, SCHEDULERS
from lora_train.core.errors import UserError
from lora_train.train.optim import ParamGroup, build_lr_scheduler, build_optimizer


def fit(optimizer_name: str, lr: float) -> tuple[float, float]:
    """Loss before and after 30 steps of fitting a small linear map."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8)
    target = torch.randn(8, 8)
    inputs = torch.randn(64, 8)
    optimizer = build_optimizer(optimizer_name, [ParamGroup("unet", list(model.parameters()), lr)], 0.0, {})
    losses = []
    for _ in range(30):
        loss = ((model(inputs) - inputs @ target) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return losses[0], losses[-1]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_lowers_a_loss(name):
    lr = {"prodigy": 1.0}.get(name, 1e-2)
    first, last = fit(name, lr)
    assert last < 0.8 * first, f"{name}: {first:.3f} -> {last:.3f}"


def test_groups_keep_their_learning_rates_and_bad_args_are_explained():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer("adamw", [ParamGroup("unet", [a], 1e-4), ParamGroup("text_encoder", [b], 5e-5)],
                                0.01, {"betas": [0.9, 0.99]})
    assert [(g["name"], g["lr"], tuple(g["betas"])) for g in optimizer.param_groups] == [
        ("unet", 1e-4, (0.9, 0.99)), ("text_encoder", 5e-5, (0.9, 0.99))]
    with pytest.raises(UserError, match="'optimizer_args' do not fit the adamw optimizer"):
        build_optimizer("adamw", [ParamGroup("unet", [a], 1e-4)], 0.0, {"momentum": 0.9})
    with pytest.raises(UserError, match="No trainable LoRA parameters"):
        build_optimizer("adamw", [ParamGroup("unet", [], 1e-4)], 0.0, {})


def lr_curve(name: str, total: int = 100, warmup: int = 10) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_lr_scheduler(name, optimizer, total, warmup, num_cycles=2, power=2.0)
    curve = []
    for _ in range(total):
        curve.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return curve


@pytest.mark.parametrize("name", SCHEDULERS)
def test_schedules_warm_up_then_follow_their_shape(name):
    curve = lr_curve(name)
    if name == "constant":
        assert set(curve) == {1.0}
        return
    assert curve[0] == 0.0 and curve[5] == pytest.approx(0.5) and max(curve) == pytest.approx(1.0)
    tail = curve[10:]
    if name == "constant_with_warmup":
        assert set(tail) == {1.0}
    elif name == "cosine_with_restarts":
        assert tail[40] < 0.2 and tail[50] > 0.9, "two cycles: low at the end of the first, high after the restart"
    else:
        assert tail[-1] < 0.05 and all(x >= y for x, y in zip(tail, tail[1:])), f"{name} must decay to ~0"
    if name == "polynomial":
        assert tail[45] < lr_curve("linear")[55], "power 2 decays faster than linear in the middle"
