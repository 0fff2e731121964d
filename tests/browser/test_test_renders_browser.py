""""Test now"'s two renders in chromium, in the tab's HTML box under the gradio the server runs
(LORA_TRAIN_UI_PYTHON picks 3.41): side by side, each under its label, at its own size, nothing to scroll.

The standalone server renders nothing, so a small gradio page shows `markup.comparison` of two renders in the
tab's `gr.HTML` with the tab's style sheet, as "Test now" puts them there."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PAGE = textwrap.dedent("""
    import sys
    import gradio as gr
    from PIL import Image
    from lora_train.webui.image_tab import render as markup
    from lora_train.webui.kit import compat

    size = int(sys.argv[2])
    renders = [(Image.new("RGB", (size, size), colour), label) for colour, label in
               (((200, 40, 40), "without the LoRA"), ((40, 80, 200), "with <lora:artist_a_v2:0.8>"))]
    with gr.Blocks() as blocks:
        gr.HTML(markup.comparison(renders), elem_id="lora_train_test_images")
    compat.launch(blocks, open(sys.argv[3]).read(), server_port=int(sys.argv[1]))
""")


@pytest.fixture(params=[256, 1024], ids=["smaller-than-the-box", "larger-than-the-box"])
def renders_page(request, browser, running_server, free_port, tmp_path):
    size = request.param
    command = [os.environ.get("LORA_TRAIN_UI_PYTHON", sys.executable), "-c", PAGE, str(free_port), str(size),
               str(ROOT / "style.css")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    url = f"http://127.0.0.1:{free_port}/"
    with running_server(command, tmp_path, env, tmp_path / "server.log", url, 90):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#lora_train_test_images img').length == 2 && "
                               "[...document.querySelectorAll('#lora_train_test_images img')]"
                               ".every(image => image.complete && image.naturalWidth)", timeout=30_000)
        yield page, size
        page.close()


def test_the_two_renders_are_side_by_side_labelled_at_their_size(renders_page):
    page, size = renders_page
    figures = page.eval_on_selector_all("#lora_train_test_images figure", """figures => figures.map(figure => {
        const image = figure.querySelector('img').getBoundingClientRect();
        return {label: figure.querySelector('figcaption').innerText, top: image.top, left: image.left,
                right: image.right, width: image.width, natural: figure.querySelector('img').naturalWidth,
                caption: figure.querySelector('figcaption').getBoundingClientRect().top - image.bottom};
    })""")
    assert [figure["label"] for figure in figures] == ["without the LoRA", "with <lora:artist_a_v2:0.8>"]
    without, with_lora = figures
    assert without["top"] == with_lora["top"] and with_lora["left"] >= without["right"]  # side by side
    assert all(figure["natural"] == size and 0 <= figure["caption"] < 20 for figure in figures)  # label below
    box_width = page.eval_on_selector("#lora_train_test_images", "box => box.getBoundingClientRect().width")
    if 2 * size < box_width:
        assert without["width"] == with_lora["width"] == size  # at their size
    else:
        assert with_lora["right"] - without["left"] <= box_width and without["width"] == with_lora["width"]
    scrolled = page.eval_on_selector_all("#lora_train_test_images, #lora_train_test_images *", """boxes =>
        boxes.filter(box => box.scrollHeight > box.clientHeight + 1 || box.scrollWidth > box.clientWidth + 1)
             .filter(box => ['auto', 'scroll'].includes(getComputedStyle(box).overflowY) ||
                            ['auto', 'scroll'].includes(getComputedStyle(box).overflowX)).length""")
    assert scrolled == 0, "something inside the box scrolls"
