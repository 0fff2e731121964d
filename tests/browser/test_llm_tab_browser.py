"""The LLM LoRA tab in the standalone server, driven in chromium: preview the data, train a tiny Llama in the
worker, watch progress and the loss chart, test the adapter against the base model; the adapter lands in the
LLM-LoRA folder beside the Lora folder."""

from __future__ import annotations

import pytest

from test_tab_browser import fill, text, wait_for
from text_support import SEED

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_preview_train_and_compare_in_the_llm_tab(page, workspace, tiny_llm):
    page.get_by_role("tab", name="LLM LoRA").click()
    page.wait_for_selector("#lora_train_llm_start")
    fill(page, "lora_train_llm_base_model", tiny_llm("llama"))
    fill(page, "lora_train_llm_data", SEED)
    for key, value in (("learning_rate", 0.01), ("epochs", 2), ("val_size", 2), ("cutoff_len", 256),
                       ("output_name", "browser_llm")):
        fill(page, f"lora_train_llm_{key}", value)
    page.click("#lora_train_llm_preview_button")
    wait_for(lambda: page.locator("#lora_train_llm_preview mark").count(), "the preview", 120, page)
    assert "### Instruction:" in text(page, "lora_train_llm_preview")

    page.click("#lora_train_llm_start")
    wait_for(lambda: page.locator('#lora_train_llm_progress [data-status="done"]').count(), "the job", 300, page)
    assert page.locator("#lora_train_llm_chart polyline").count() == 1
    assert "eval loss" in text(page, "lora_train_llm_evals")
    adapter = workspace / "LLM-LoRA" / "browser_llm"  # beside the --lora-dir folder
    assert str(adapter) in text(page, "lora_train_llm_saved")
    assert (adapter / "adapter_model.safetensors").is_file()

    fill(page, "lora_train_llm_prompt", "Who founded the city of Quill?")
    page.click("#lora_train_llm_test")
    answers = lambda: [page.locator(f"#lora_train_llm_answer_{k} textarea").input_value() for k in ("base", "adapter")]  # noqa: E731
    wait_for(lambda: all(answers()), "both answers", 180, page)
    assert answers()[0] != answers()[1]
