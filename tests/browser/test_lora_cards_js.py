"""javascript/lora_train.js in chromium on a stand-in of the WebUI's page: new LoRA cards without a click.

The stand-in has what the script uses of A1111 / Forge: `gradioApp`, `onUiLoaded`, the txt2img and
img2img Lora card lists (`#<tab>_lora_cards .card[data-name]`) and their hidden refresh buttons
(`#<tab>_lora_extra_refresh_internal`), whose click here adds the card (as the WebUI's refresh
does) or, to act out a stale answer, nothing. The tab's result HTML is the one `markup.result`
makes. The page's clock is Playwright's, so the seconds between checks pass at once. The same
behaviour in a real WebUI is in test_webui_integration.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_train.webui.image_tab import render as markup
from lora_train.webui.image_tab.use_section import insert_note

pytestmark = pytest.mark.browser
SCRIPT = Path(__file__).resolve().parents[2] / "javascript" / "lora_train.js"
WEBUI_PAGE = """
<div id="lora_train_result"></div>
<div id="txt2img_lora_cards"><div class="card" data-name="older"></div></div>
<button id="txt2img_lora_extra_refresh_internal" style="display:none"></button>
<div id="img2img_lora_cards"><div class="card" data-name="older"></div></div>
<button id="img2img_lora_extra_refresh_internal" style="display:none"></button>
<script>
  window.gradioApp = () => document;
  window.onUiLoaded = (callback) => { window.uiLoaded = callback; };
  window.presses = [];
  window.refreshAnswers = true;
  for (const tab of ["txt2img", "img2img"]) {
    document.getElementById(tab + "_lora_extra_refresh_internal").addEventListener("click", () => {
      window.presses.push(tab);
      if (!window.refreshAnswers) return;
      const cards = document.getElementById(tab + "_lora_cards");
      cards.innerHTML = window.loraNames.map((name) => `<div class="card" data-name="${name}"></div>`).join("");
    });
  }
</script>
"""


@pytest.fixture
def webui_page(browser):
    page = browser.new_page()
    page.clock.install()
    page.set_content(WEBUI_PAGE)
    page.add_script_tag(path=str(SCRIPT))
    page.evaluate("window.uiLoaded()")
    yield page
    page.close()


def show_result(page, name: str) -> None:
    """The tab's result after a job, as the tick puts it into the page (also on a freshly loaded page)."""
    html = markup.result(f"/webui/models/Lora/{name}.safetensors", [(f"{name}.safetensors", True)],
                         f"<lora:{name}:0.8>", False)
    page.evaluate("([html, names]) => { window.loraNames = names; "
                  "document.getElementById('lora_train_result').innerHTML = html; }", [html, ["older", name]])


def presses_after(page, seconds: float) -> list[str]:
    page.clock.run_for(int(seconds * 1000))
    return page.evaluate("window.presses")


def test_a_saved_lora_brings_its_card_into_both_lora_pages_without_a_click(webui_page):
    assert presses_after(webui_page, 10) == []  # no saved LoRA: the pages are left alone
    show_result(webui_page, "my_lora_v2")
    assert sorted(presses_after(webui_page, 2.5)) == ["img2img", "txt2img"]
    for tab in ("txt2img", "img2img"):
        assert webui_page.locator(f"#{tab}_lora_cards .card[data-name='my_lora_v2']").count() == 1
    assert len(presses_after(webui_page, 30)) == 2  # the cards are there: no more refreshes


def test_a_stale_answer_is_refreshed_again_a_few_times_then_left(webui_page):
    webui_page.evaluate("window.refreshAnswers = false")
    show_result(webui_page, "my_lora")
    assert len(presses_after(webui_page, 2.5)) == 2
    assert len(presses_after(webui_page, 2)) == 2  # not at every check: seconds apart
    assert len(presses_after(webui_page, 60)) == 6  # three tries per page at most


def test_a_lora_whose_card_is_there_needs_no_refresh(webui_page):
    show_result(webui_page, "older")
    assert presses_after(webui_page, 10) == []


def test_insert_puts_the_tag_into_the_prompt_once_and_the_tab_says_what_it_did(webui_page):
    answers = [webui_page.evaluate("loraTrainInsertTag('')")]  # no LoRA yet (a new install, nothing trained)
    answers.append(webui_page.evaluate("loraTrainInsertTag('<lora:my_lora:0.8>')"))  # no txt2img prompt here
    webui_page.evaluate("document.body.insertAdjacentHTML('beforeend', "
                        "'<div id=\"txt2img_prompt\"><textarea>a cat</textarea></div>')")
    answers += [webui_page.evaluate("loraTrainInsertTag('<lora:my_lora:0.8>')") for _ in range(2)]
    assert answers == ["no-tag", "no-prompt", "inserted", "inserted"]
    assert webui_page.locator("#txt2img_prompt textarea").input_value() == "a cat <lora:my_lora:0.8>"
    notes = [insert_note(answer) for answer in answers]
    assert "There is no LoRA to insert yet" in notes[0] and 'data-level="warning"' in notes[0]
    assert "no txt2img prompt" in notes[1] and "The tag is in the txt2img prompt." in notes[2]
