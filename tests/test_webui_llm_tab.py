"""The LLM LoRA tab's actions, driven without a browser against the real worker: preview shows the learned
part, a job trains in the worker and lands in the LLM-LoRA folder (never in the Lora folder), progress and
the loss chart follow it, and the test box answers without and with the adapter."""

from __future__ import annotations

import sys

import pytest

from lora_train.webui.host import StandaloneHost, TabSettings
from lora_train.webui.llm_tab import SETTINGS, LlmTab
from lora_train.webui.paths import PathPolicy
from lora_train.webui.runner import JobRunner
from text_support import SEED


@pytest.mark.slow
def test_preview_train_and_test_from_the_tab(tmp_path, tiny_llm, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("LORA_TRAIN_PYTHON", sys.executable)
    lora_dir = tmp_path / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    host = StandaloneHost(None, TabSettings(lora_dir, tmp_path / "runs"), PathPolicy(False, [], ""))
    runner = JobRunner()
    tab = LlmTab(host, runner)
    settings = dict(zip(SETTINGS, ["auto", 8, 16, 0.01, 2, 4, 256, 2, False, "tab_lora"]))
    base = str(tiny_llm("llama"))

    html, _ = tab.preview(base, str(SEED), *settings.values())
    assert "<mark>" in html and "### Instruction:" in html and "10 training / 2 eval" in html
    assert "Started training tab_lora" in tab.start(base, str(SEED), *settings.values())
    assert runner.wait(600)
    state = runner.snapshot()
    assert state.status == "done", state.messages
    assert state.lora_path == str(tmp_path / "models" / "LLM-LoRA" / "tab_lora") and not any(lora_dir.iterdir())
    bar, chart, evals, _, saved, _ = tab.tick({})
    assert 'data-status="done"' in bar and "<polyline" in chart and "eval loss" in evals and "tab_lora" in saved
    without, with_adapter, _ = tab.test("Who founded the city of Quill?", "", base)
    assert without != with_adapter
