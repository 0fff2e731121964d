"""The "Stack & test" section in the standalone server: a strength grid of two LoRAs of the Lora folder,
rendered by the worker on the tiny SD1 model, saved with its parameters, then merged into a new LoRA with
its card and preview; a missing prompt is a message."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from test_tab_browser import choose, field, fill, messages, wait_for
from tools_support import lora_file

from lora_train.adapters.spec import LoraSpec
from lora_train.core.grid_image import GridSpec, layout

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack_loras(workspace):
    folder = workspace / "loras"
    folder.mkdir(exist_ok=True)
    return [lora_file(folder, name, "sd1", LoraSpec(rank=2, alpha=2.0), seed=seed)[0]
            for name, seed in (("style_a", 0), ("style_b", 1))]


def choose_listed(page, elem_id: str, value: str) -> None:
    """Choose `value` once the dropdown lists it: the Refresh that adds it answers asynchronously, and a dropdown
    drops a typed value it does not list."""
    wait_for(lambda: choose(page, elem_id, value) or field(page, elem_id).input_value() == value,
             f"{value} in {elem_id}", 30, page)


def test_grid_renders_and_the_pair_merges_into_a_new_lora(page, workspace, stack_loras):
    page.get_by_text("6. Stack & test").click()
    page.click("#lora_train_stack_refresh")
    choose(page, "lora_train_base_model", "tiny-sd1.safetensors")
    choose_listed(page, "lora_train_stack_lora_1", "style_a")
    choose_listed(page, "lora_train_stack_lora_2", "style_b")
    fill(page, "lora_train_stack_weights_1", "1")
    fill(page, "lora_train_stack_weights_2", "0.5, 1")
    for elem_id, value in (("width", 64), ("height", 64), ("steps", 2)):
        fill(page, f"lora_train_stack_{elem_id}", value)

    page.click("#lora_train_stack_render")
    note = wait_for(lambda: messages(page, "lora_train_stack_note", "error") or
                    messages(page, "lora_train_stack_note", "success"), "the grid", page=page)
    assert "Write a prompt" in note  # nothing rendered without one
    fill(page, "lora_train_stack_prompt", "a square")
    page.click("#lora_train_stack_render")
    wait_for(lambda: "Saved the grid" in messages(page, "lora_train_stack_note", "success"), "the grid", page=page)
    wait_for(lambda: page.locator("#lora_train_stack_grid img").count(), "the grid image", 30, page)

    grids = sorted((workspace / "runs" / "grids").glob("stack-*.png"))
    assert len(grids) == 1
    bands = layout(GridSpec(["style_a", "style_b"], [[0.0, 1.0], [0.0, 0.5, 1.0]], "a square"), 64, 64)
    with Image.open(grids[0]) as grid:  # rows 0, 1 of style_a; columns 0, 0.5, 1 of style_b
        assert grid.size == (bands.left + 3 * 64, bands.top + 2 * 64)
    params = json.loads(grids[0].with_suffix(".json").read_text())
    assert params["loras"] == ["style_a", "style_b"] and params["weights"] == [[0.0, 1.0], [0.0, 0.5, 1.0]]

    fill(page, "lora_train_stack_merge_1", 0.6)
    fill(page, "lora_train_stack_merge_2", 0.4)
    fill(page, "lora_train_stack_name", "mix")
    page.click("#lora_train_stack_merge")
    wait_for(lambda: "Saved" in messages(page, "lora_train_stack_note", "success") and
             "mix" in messages(page, "lora_train_stack_note", "success"), "the merge", page=page)
    loras = workspace / "loras"
    assert {"mix.safetensors", "mix.json", "mix.preview.png"} <= {path.name for path in loras.iterdir()}
    card = json.loads((loras / "mix.json").read_text())
    assert card["sd version"] == "SD1" and "style_a x 0.6 + style_b x 0.4" in card["description"]
    assert "Traceback" not in page.inner_text("body")
