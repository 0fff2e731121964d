"""What the LLM tab shows: the data preview (masked prompt and learned answer told apart), its token
statistics, the saved adapter (as HTML), and the test box's answers (control characters made visible)."""

from __future__ import annotations

import html
import unicodedata
from typing import Any

from ..kit.markup import message


def preview_rows(rows: list[list[tuple[str, bool]]], template: str) -> str:
    """Each row's text exactly as the model reads it; the learned part is highlighted, the masked part dimmed."""
    shown = []
    for number, segments in enumerate(rows, start=1):
        spans = "".join(f'<span class="lora-train-{"learned" if learned else "masked"}">{html.escape(text)}</span>'
                        for text, learned in segments)
        shown.append(f'<div class="lora-train-llm-row"><div class="lora-train-llm-row-title">row {number}</div>'
                     f'<pre>{spans}</pre></div>')
    legend = (f'<div class="lora-train-llm-legend">Prompt format: <b>{html.escape(template)}</b>. '
              '<span class="lora-train-masked">dimmed: the prompt, not learned</span> · '
              '<span class="lora-train-learned">highlighted: learned (the answer and its end token)</span></div>')
    return f'<div class="lora-train-llm-preview">{legend}{"".join(shown)}</div>'


def preview_stats(preview: dict[str, Any]) -> str:
    """The engine's counts and token lengths, and its notes (rows skipped, rows cut at cutoff_len)."""
    text = (f"{preview['train_rows']} training sequence(s), {preview['val_rows']} for eval. Tokens per sequence: "
            f"min {preview['tokens_min']}, mean {preview['tokens_mean']:g}, max {preview['tokens_max']}.")
    return message(text, "success") + "".join(message(note, "warning") for note in preview["notes"])


def adapter_result(path: str, files: list[tuple[str, bool]], interrupted: bool) -> str:
    title = "Partial adapter saved (interrupted)" if interrupted else "Adapter saved"
    rows = "".join(f'<li data-present="{str(present).lower()}">{"✓" if present else "✗"} {html.escape(name)}</li>'
                   for name, present in files)
    return (f'<div class="lora-train-result"><b>{title}:</b> <code>{html.escape(path)}</code><ul>{rows}</ul>'
            'Test it in section 5, or load it with <code>PeftModel.from_pretrained(model, folder)</code>.</div>')


def readable(text: str) -> str:
    """`text` for a text box: control characters other than newlines and tabs (which a box shows as empty
    squares, or not at all) written as Python escapes, `\\x1b`, `\\x00`; Windows line ends as newlines."""
    return "".join(char if char in "\n\t" or unicodedata.category(char) != "Cc" else
                   char.encode("unicode_escape").decode("ascii") for char in text.replace("\r\n", "\n"))
