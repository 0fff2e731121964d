"""The Train LoRA tab after a WebUI restart (the standalone server stopped and started again on the same
folders), in chromium: "5. Use it" offers the last LoRA the tab trained, and the form comes back with that
job's values, not the defaults; before any job it says that there is no LoRA yet."""

from __future__ import annotations

import pytest
from test_tab_browser import field, fill, fill_job, messages, text, wait_for, wait_until_ended

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_tab(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#lora_train_start", timeout=30_000)
    return page


def test_after_a_restart_the_tab_offers_the_last_lora_and_its_jobs_form(browser, tab_server, workspace):
    with tab_server() as url:
        page = open_tab(browser, url)
        assert "No LoRA trained yet" in messages(page, "lora_train_result")
        fill_job(page, workspace, "before_restart", epochs=2)
        fill(page, "lora_train_lora_rank", 8)
        page.click("#lora_train_start")
        assert "LoRA saved" in wait_until_ended(page)
        page.close()

    with tab_server() as url:  # the same folders, a new process: the runner starts empty
        page = open_tab(browser, url)
        result = wait_for(lambda: "before_restart.safetensors" in text(page, "lora_train_result") and
                          text(page, "lora_train_result"), "the last LoRA", 30, page)
        assert "LoRA saved" in result and "No LoRA trained yet" not in result
        assert field(page, "lora_train_tag").input_value() == "<lora:before_restart:0.8>"
        wait_for(lambda: field(page, "lora_train_output_name").input_value() == "before_restart", "the job's form",
                 30, page)
        assert field(page, "lora_train_data_dir").input_value() == str(workspace / "data")
        assert (field(page, "lora_train_epochs").input_value(), field(page, "lora_train_lora_rank").input_value(),
                field(page, "lora_train_trigger_word").input_value()) == ("2", "8", "zq")
        assert "tiny-sd1.safetensors" in field(page, "lora_train_base_model").input_value()
        page.close()
