"""The validation loss of an image run, end to end on the tiny SD1 and Flux models: computed twice on the same
LoRA it is identical and leaves training's random state alone; trained far past its best with a high learning
rate it falls and then rises; keep_best saves the lowest point's weights (the epoch file's tensors), early stop
ends the run there and says so; a stopped and resumed run has the uninterrupted run's curve."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from lora_train.config import load_config
from lora_train.core.events import Fanout
from lora_train.core.naming import sidecar_path
from lora_train.dit.trainer import build_flux_loop
from lora_train.train.image_trainer import build_loop, open_session
from lora_train.train.stop import StopRequest
from train_support import DATASET, FAST, train

pytestmark = pytest.mark.slow
EPOCHS, LR = 15, 5e-2
# Four "red grain" images trained on, four held out (a learnable concept: the colour and the grain's statistics;
# each image's own grain is noise); a rate far too high for a long run: the held-out loss falls for about nine
# epochs (2 steps each), then rises as the LoRA learns the four images' own grain.
OVERFIT = dict(val_split=4, epochs=EPOCHS, learning_rate=LR, train_text_encoder=False, sample_steps=0,
               save_every_n_epochs=1)


def red_grain(folder: Path, count: int = 8) -> Path:
    """`count` 64 px images of red noise, each its own draw, captioned alike."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        noise = np.random.default_rng(100 + index).normal(0, 70, (64, 64, 3))
        Image.fromarray(np.clip(np.array([200, 60, 40]) + noise, 0, 255).astype(np.uint8)).save(
            folder / f"{index:02d}.png")
        (folder / f"{index:02d}.txt").write_text("red grain")
    return folder


def stop_index(curve: list[float], patience: int) -> int:
    """Where a run with early_stop_patience ends on this curve: the evaluation `patience` past a lowest one."""
    best = 0
    for index, loss in enumerate(curve):
        best = index if loss < curve[best] else best
        if index - best >= patience:
            return index
    return len(curve) - 1


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def evals(events: list[dict]) -> list[tuple[int, float]]:
    return [(e["step"], e["eval_loss"]) for e in events if e["type"] == "eval"]


def validation_twice(build, base_model, tmp_path, **settings) -> None:
    """The loop's validation loss twice on the same LoRA: identical, and torch's and Python's random state as
    before; another LoRA gives another value."""
    config = load_config(overrides={**FAST, "base_model": str(base_model), "train_data_dir": str(DATASET),
                                    "output_dir": str(tmp_path / "out"), "val_split": 2, **settings})
    session = open_session(config, Fanout())
    try:
        loop = build(config, session, StopRequest())
        torch_state, python_state = torch.get_rng_state(), random.getstate()
        first, second = loop.validation.compute(), loop.validation.compute()
        assert first == second
        assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
        with torch.no_grad():
            for param in loop.params:
                param.add_(0.05 * torch.randn_like(param))
        assert loop.validation.compute() != first
    finally:
        session.report.close()


@pytest.mark.parametrize("model", ["tiny_sd1_file", "tiny_sd2v_file", "tiny_sdxl_file"])  # eps, v, SDXL's inputs
def test_the_validation_loss_of_the_same_lora_is_identical(model, request, tmp_path):
    validation_twice(build_loop, request.getfixturevalue(model), tmp_path)


def test_flux_reports_a_deterministic_validation_loss(tiny_flux_files, tmp_path):
    model = tiny_flux_files("flux-dev").transformer
    flux = dict(t5xxl_max_token_length=16, train_text_encoder=False, sample_steps=0)
    validation_twice(build_flux_loop, model, tmp_path, **flux)
    settings = dict(val_split=2, max_train_steps=6, **flux)  # 6 images trained on, 3 steps an epoch
    _, first = train(model, tmp_path / "a", **settings)
    _, second = train(model, tmp_path / "b", **settings)
    assert [step for step, _ in evals(first)] == [3, 6]
    assert evals(first) == evals(second)
    assert first[-1]["best_eval_loss"] == min(loss for _, loss in evals(first))


def test_keep_best_saves_the_lowest_point_and_early_stop_ends_the_run_there(tiny_sd1_file, tmp_path):
    data = str(red_grain(tmp_path / "data"))
    path, events = train(tiny_sd1_file, tmp_path / "long", keep_best=True, train_data_dir=data, **OVERFIT)
    curve = [loss for _, loss in evals(events)]
    best = curve.index(min(curve))
    assert len(curve) == EPOCHS and 0 < best < EPOCHS - 2, f"no fall then rise: {curve}"
    assert curve[-1] > curve[best] * 1.05, f"the loss did not rise past its best: {curve}"
    done = events[-1]
    assert (done["best_epoch"], done["best_eval_loss"], done["kept_best"]) == (best + 1, curve[best], True)
    epoch_file = path.with_name(f"my_lora-{best + 1:06d}.safetensors")
    assert done["best_file"] == epoch_file.name and f"at epoch {best + 1}" in done["message"]
    final, kept = load_file(str(path)), load_file(str(epoch_file))
    assert final.keys() == kept.keys() and all(torch.equal(final[key], kept[key]) for key in final)
    last = load_file(str(path.with_name(f"my_lora-{EPOCHS - 1:06d}.safetensors")))
    assert any(not torch.equal(final[key], last[key]) for key in final), "the final LoRA is the last epoch's"
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata()["lora_train_best_epoch"] == str(best + 1)
    assert f'"best epoch": {best + 1}' in sidecar_path(path).read_text()

    _, stopped = train(tiny_sd1_file, tmp_path / "early", early_stop_patience=2, train_data_dir=data, **OVERFIT)
    assert evals(stopped) == evals(events)[:stop_index(curve, 2) + 1], "early stop did not end the run two " \
                                                                       "evaluations past its lowest point"
    assert stopped[-1]["best_epoch"] == best + 1, "early stop ended the run far from its best"
    assert stopped[-1]["early_stopped"] is True and "stopped early" in stopped[-1]["message"]
    assert any(e["type"] == "log" and e["message"].startswith("Early stop: the validation loss has not improved for 2")
               for e in stopped)


def test_a_resumed_run_has_the_uninterrupted_run_s_validation_curve(tiny_sd1_file, tmp_path):
    settings = dict(val_split=4, max_train_steps=6, val_every_n_steps=1, save_steps=2, keep_best=True,
                    learning_rate=LR, train_text_encoder=False, sample_steps=0,
                    train_data_dir=str(red_grain(tmp_path / "data")))
    straight, uninterrupted = train(tiny_sd1_file, tmp_path / "a", **settings)
    assert [step for step, _ in evals(uninterrupted)] == list(range(1, 7))
    _, first = train(tiny_sd1_file, tmp_path / "b", stop_at_step=3, **settings)
    resumed, second = train(tiny_sd1_file, tmp_path / "b", resume_from_checkpoint="latest", **settings)
    start = next(e for e in second if e["type"] == "start")
    assert [tuple(point) for point in start["eval_losses"]] == evals(first) == evals(uninterrupted)[:3]
    assert evals(first) + evals(second) == evals(uninterrupted)
    assert second[-1]["best_step"] == uninterrupted[-1]["best_step"]
    expected, got = load_file(str(straight)), load_file(str(resumed))
    assert all(torch.equal(expected[key], got[key]) for key in expected), "keep_best's weights were lost on resume"
