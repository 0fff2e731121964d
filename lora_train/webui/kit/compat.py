"""The few gradio calls that differ between the versions the tab runs under.

A1111 1.10 ships gradio 3.41.2, Forge 4.40, the standalone server the current gradio. The tab
uses only components and arguments that all of them accept; what differs is wrapped here:
the name of an event's JavaScript argument (`_js` in 3.x, `js` later) and periodic updates
(`every=` on a load event in 3.x, `gr.Timer` from 4.40 on, where `every=` is gone).

Under 3.x a periodic update is one call per page that goes on with the inputs it got when the page
loaded: a textbox's value then, a State's value then. So periodic handlers read only the server's
state and the page's memory (`page_memory`), never another input.
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

GRADIO_MAJOR = int(gr.__version__.split(".")[0])


def js(code: str) -> dict[str, str]:
    """Keyword arguments that run `code` (a JS function) in the browser for an event."""
    return {"_js": code} if GRADIO_MAJOR < 4 else {"js": code}


def every(blocks: gr.Blocks, seconds: float, fn: Callable, inputs: list, outputs: list) -> None:
    """Call `fn` every `seconds` while the page is open (and once when it opens)."""
    options: dict[str, Any] = dict(inputs=inputs, outputs=outputs, show_progress="hidden")
    if hasattr(gr, "Timer"):
        gr.Timer(seconds).tick(fn, **options)
        blocks.load(fn, **options)
    else:
        blocks.load(fn, every=seconds, **options)


def page_memory() -> gr.State:
    """A dict the server keeps for one open page: what it shows (the job and listing it last got), for the
    periodic updates to send only what changed. Handlers change it in place and never return it: each
    page gets its own copy at its first event and every handler of the page, the 3.x periodic update
    included, is given that same object; a returned one would replace it for the later events only."""
    return gr.State({})


def launch(blocks: gr.Blocks, css: str, **kwargs: Any) -> Any:
    """Start a server for `blocks` with `css` (a Blocks argument before gradio 6, a launch one since)."""
    if GRADIO_MAJOR >= 6:
        return blocks.launch(css=css, **kwargs)
    blocks.css = css
    return blocks.launch(**kwargs)
