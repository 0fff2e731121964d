"""The LLM LoRA tab in chromium, on a tiny Llama built in code, with the real model worker and engine.

What a user does: pick the model from the LLM models folder and load it, preview the data as the
model will read it (prompt masked, answer learned) with token statistics, train and watch the
progress bar and the loss chart (with eval loss), find the adapter in the LLM adapter folder (not
the image Lora folder), and ask the trained question without and with the adapter side by side.
Bad inputs are messages in the page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_tab_browser import field, fill, messages, text, wait_for
from text_support import SEED, seed_rows

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ID = "lora_train_llm_"
JOB_TIMEOUT = 240
EPOCHS = 40  # long enough (120 steps) for the page to see the chart grow between its 1 s updates on a fast machine


@pytest.fixture(scope="module")
def llm_files(workspace, tiny_llm) -> Path:
    """A tiny Llama in models/LLM and the seed alpaca rows in data-llm/, before the server starts."""
    shutil.copytree(tiny_llm("llama"), workspace / "models" / "LLM" / "tiny-llama")
    (workspace / "data-llm").mkdir()
    shutil.copy(SEED, workspace / "data-llm" / "qa.jsonl")
    (workspace / "old-ggml.bin").write_bytes(b"tjgg" + bytes(64))
    return workspace


@pytest.fixture
def llm_page(llm_files, browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server)
    page.locator("button[role=tab], .tab-nav button", has_text="LLM LoRA").first.click()  # gradio 3's have no role
    page.wait_for_selector(f"#{ID}start", timeout=30_000)
    yield page
    page.close()


def chart_points(page) -> tuple[int, int]:
    chart = page.locator(f"#{ID}chart .lora-train-chart")
    if not chart.count():
        return 0, 0
    return int(chart.get_attribute("data-points")), int(chart.get_attribute("data-eval-points"))


def llm_progress(page) -> tuple[str, int, int]:
    bar = page.locator(f"#{ID}progress .lora-train-progress")
    if not bar.count():
        return "", 0, 0
    return bar.get_attribute("data-status"), int(bar.get_attribute("data-step")), int(bar.get_attribute("data-total"))


def test_load_preview_train_and_compare_answers(llm_page, workspace):
    page = llm_page
    assert field(page, f"{ID}model_choice").input_value() == "tiny-llama"
    page.click(f"#{ID}load")
    note = wait_for(lambda: "Loaded:" in text(page, f"{ID}model_note") and text(page, f"{ID}model_note"),
                    "the model to load", 120, page)
    assert "llama" in note and "on cpu" in note

    fill(page, f"{ID}data_path", workspace / "data-llm" / "qa.jsonl")
    page.click(f"#{ID}preview")
    wait_for(lambda: page.locator(f"#{ID}preview_html .lora-train-learned").count(), "the preview", 60, page)
    first = page.locator(f"#{ID}preview_html .lora-train-llm-row").first
    masked = " ".join(first.locator(".lora-train-masked").all_inner_texts())
    learned = " ".join(first.locator(".lora-train-learned").all_inner_texts())
    question, answer = seed_rows()[0]["instruction"], seed_rows()[0]["output"]
    assert "### Instruction:" in masked and question in masked and answer not in masked
    assert learned.startswith(answer + "</s>")  # the answer and its end token are learned
    assert page.locator(f"#{ID}preview_html .lora-train-llm-row").count() == 3
    stats = messages(page, f"{ID}preview_stats")
    assert f"{len(seed_rows())} training sequence(s), 0 for eval. Tokens per sequence: min" in stats

    fill(page, f"{ID}output_name", "zorblax")
    fill(page, f"{ID}epochs", EPOCHS)
    fill(page, f"{ID}learning_rate", 0.01)
    fill(page, f"{ID}val_size", 2)
    page.click(f"#{ID}start")
    wait_for(lambda: "Started training zorblax" in messages(page, f"{ID}action_note"), "the start", 30, page)
    seen = set()
    wait_for(lambda: seen.add(chart_points(page)[0]) or len(seen - {0, 1}) >= 3 or llm_progress(page)[0] == "done",
             "the loss chart to move", JOB_TIMEOUT, page)
    wait_for(lambda: llm_progress(page)[0] in ("done", "interrupted", "failed") and text(page, f"{ID}result"),
             "the job to end", JOB_TIMEOUT, page)
    status, step, total = llm_progress(page)
    assert (status, step) == ("done", total) and total == 3 * EPOCHS  # 10 training rows, batch 4: 3 steps an epoch
    assert len(seen - {0, 1}) >= 2, f"chart sizes seen: {sorted(seen)}"
    points, evals = chart_points(page)
    assert points == total and evals == EPOCHS  # one eval loss per epoch
    result = text(page, f"{ID}result")
    published = workspace / "LLM-LoRA" / "zorblax"
    assert "Adapter saved" in result and str(published) in result and result.count("✓") == 4
    assert (published / "adapter_model.safetensors").is_file() and (published / "adapter_config.json").is_file()
    assert not any("zorblax" in path.name for path in (workspace / "loras").iterdir())

    wait_for(lambda: field(page, f"{ID}adapters").input_value() == "zorblax:1.0", "the adapter in the test box", 30)
    fill(page, f"{ID}prompt", question)
    fill(page, f"{ID}max_tokens", 24)
    page.click(f"#{ID}test")
    adapted = wait_for(lambda: field(page, f"{ID}answer_adapted").input_value(), "the answers", 120, page)
    base = field(page, f"{ID}answer_base").input_value()
    assert base and base != adapted
    assert adapted.strip() == answer  # memorised, and it stops (EOS) instead of running on
    assert "Traceback" not in page.inner_text("body")


def test_bad_inputs_are_messages_not_tracebacks(llm_page, workspace):
    page = llm_page
    fill(page, f"{ID}data_path", workspace / "nowhere.jsonl")
    page.click(f"#{ID}preview")
    note = wait_for(lambda: messages(page, f"{ID}preview_stats", "error"), "the dataset message", 30, page)
    assert "does not exist" in note

    fill(page, f"{ID}model_path", workspace / "old-ggml.bin")
    page.click(f"#{ID}load")
    note = wait_for(lambda: messages(page, f"{ID}model_note", "error"), "the model message", 60, page)
    assert "legacy GGML" in note

    fill(page, f"{ID}prompt", "hello")
    fill(page, f"{ID}adapters", "no_such_adapter")
    page.click(f"#{ID}test")
    note = wait_for(lambda: messages(page, f"{ID}test_note", "error"), "the test message", 60, page)
    assert any(words in note for words in ("Load a base model first", "not a PEFT adapter",
                                           "Adapter folder not found: "))
    body = page.inner_text("body")
    assert "Traceback" not in body and 'File "' not in body
