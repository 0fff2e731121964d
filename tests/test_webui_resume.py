"""Interrupt, then Resume, through the tab's actions with the real engine in a worker process: one run gives
one LoRA with one card (the resumed run finishes under the name it started with, over its own partial file),
the partial card lists no missing preview, and the chart of the resumed job shows the whole loss curve."""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from lora_train.webui.image_tab.controller import TabController
from lora_train.webui.hosts.host import TabSettings
from lora_train.webui.hosts.paths import PathPolicy
from lora_train.webui.worker.runner import JobRunner
from lora_train.webui.hosts.standalone_host import StandaloneHost
from test_webui_controller import form_inputs, images

pytestmark = pytest.mark.slow

SMALL = dict(resolution=64, enable_bucket=False, lora_rank=4, lora_alpha=4, optimizer="adamw", scheduler="constant",
             mixed_precision="no", log_with="none", batch_size=1, max_train_steps=16, sample_steps=0)


def wait_for_step(runner: JobRunner, step: int) -> None:
    deadline = time.monotonic() + 300
    while (state := runner.snapshot()) is None or state.step < step:
        assert not (state and state.finished), f"the job ended before step {step}: {state and state.messages}"
        assert time.monotonic() < deadline, "no training steps"
        time.sleep(0.05)


def test_interrupt_then_resume_gives_one_lora_with_one_card_and_the_whole_chart(tmp_path, tiny_checkpoints,
                                                                                 monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    models = tmp_path / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    tiny = tiny_checkpoints("sd1")
    shutil.copy(tiny.single_file, models / "sd1.safetensors")
    shutil.copy(tiny.yaml, models / "sd1.yaml")
    loras = tmp_path / "loras"
    host = StandaloneHost(tmp_path / "models", TabSettings(loras, tmp_path / "runs"), PathPolicy())
    controller = TabController(host, JobRunner(), python_fallback=sys.executable)
    inputs, fields = form_inputs(controller, images(tmp_path / "data", 3), output_name="artist_a", **SMALL)

    assert "Started training artist_a" in controller.start(inputs, fields)
    wait_for_step(controller.runner, 3)
    controller.interrupt()
    assert controller.runner.wait(300)
    stopped = controller.runner.snapshot()
    assert stopped.status == "interrupted" and stopped.step < 16, stopped.messages
    assert stopped.lora_path == str(loras / "artist_a.safetensors")
    partial_card = controller.result_html(stopped, 1.0)
    assert "Partial LoRA saved" in partial_card and "✗" not in partial_card  # no preview: none listed

    assert "Resuming training artist_a" in controller.start(inputs, fields, resume=True)
    assert controller.runner.wait(300)
    resumed = controller.runner.snapshot()
    assert resumed.status == "done", resumed.messages
    assert resumed.lora_path == str(loras / "artist_a.safetensors"), "the resumed run finishes the same LoRA"
    assert sorted(path.name for path in loras.iterdir()) == ["artist_a.json", "artist_a.safetensors"]
    assert [step for step, _ in resumed.losses] == list(range(1, 17)), "the chart shows the whole curve"
    assert "✗" not in controller.result_html(resumed, 1.0)
