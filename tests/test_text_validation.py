"""The text engine's best epoch on its val_size eval: trained far past its best, the eval loss falls and rises;
keep_best saves the lowest epoch's adapter (the same tensors as a run that ends at that epoch), early stop ends
the run two epochs past it and says so."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lora_train.core.errors import UserError
from lora_train.core.events import Fanout
from lora_train.train.job import run_job
from lora_train.train.stop import StopRequest
from text_support import SEED, text_config
from test_validation_train import stop_index

pytestmark = pytest.mark.slow
# 12 seed rows, 4 held out; a constant rate (the schedule does not depend on the run's length): the eval loss
# falls for about six epochs, then rises as the adapter learns the eight answers by heart.
KEYS = dict(val_size=4, learning_rate=0.01, batch_size=4, scheduler="constant", lora_dropout=0.0, log_with="none")


@pytest.fixture(autouse=True)
def own_lock(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def train(out, base, **keys) -> tuple[object, list[dict]]:
    events: list[dict] = []
    config = text_config(base_model=str(base), metadata_path=str(SEED), output_dir=str(out), **{**KEYS, **keys})
    return run_job(config, Fanout(events.append), StopRequest()), events


def adapter(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_keep_best_and_early_stop_on_the_eval_loss(tmp_path, tiny_llm):
    base = tiny_llm("llama")
    kept, events = train(tmp_path / "long", base, epochs=12, keep_best=True)
    curve = [e["eval_loss"] for e in events if e["type"] == "eval"]
    best = curve.index(min(curve))
    assert 0 < best < 9 and curve[-1] > curve[best] * 1.02, f"no fall then rise: {curve}"
    done = events[-1]
    assert (done["best_epoch"], done["best_eval_loss"], done["kept_best"]) == (best + 1, curve[best], True)
    assert f"Best validation loss {curve[best]:.4f} at epoch {best + 1}" in done["message"]
    at_best, _ = train(tmp_path / "short", base, epochs=best + 1)
    expected, got = adapter(at_best), adapter(kept)
    assert expected.keys() == got.keys() and all(torch.equal(expected[key], got[key]) for key in expected)

    _, stopped = train(tmp_path / "early", base, epochs=12, early_stop_patience=2)
    assert [e["eval_loss"] for e in stopped if e["type"] == "eval"] == curve[:stop_index(curve, 2) + 1]
    assert stopped[-1]["early_stopped"] is True and stopped[-1]["best_epoch"] == best + 1
    assert any(e["type"] == "log" and e["message"].startswith("Early stop:") for e in stopped)


def test_keep_best_needs_val_size(tmp_path):
    with pytest.raises(UserError, match=r"'keep_best' needs an eval loss: set val_size"):
        text_config(base_model="x", metadata_path=str(SEED), keep_best=True)
