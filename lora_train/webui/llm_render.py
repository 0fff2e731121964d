"""HTML for the LLM tab: the data preview (masked prompt and learned answer told apart), its token
statistics, and the saved adapter."""

from __future__ import annotations

import html
from typing import Any

from .render import message


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


def preview_stats(stats: dict[str, Any], problems: list[str]) -> str:
    """Token lengths, how many rows were cut at cutoff_len, and the rows that cannot be used."""
    counts = f"{stats['conversations']} conversation row(s)" + (
        f" and {stats['documents']} text file(s)" if stats["documents"] else "")
    text = (f"{counts} -> {stats['sequences']} training sequence(s). Tokens per sequence: min {stats['min']}, "
            f"median {stats['median']:g}, mean {stats['mean']:g}, max {stats['max']}; {stats['tokens']:,} tokens "
            f"in all, {stats['learned_tokens']:,} of them learned.")
    items = [message(text, "success")]
    if stats["truncated"]:
        items.append(message(f"{stats['truncated']} row(s) are longer than cutoff_len ({stats['cutoff_len']}) and "
                             "will be cut: their end is not learned. Raise cutoff_len to keep them whole.", "warning"))
    if problems:
        items.append(message("Rows that will be skipped:\n" + "\n".join(problems), "warning"))
    return "".join(items)


def adapter_result(path: str, files: list[tuple[str, bool]], interrupted: bool) -> str:
    title = "Partial adapter saved (interrupted)" if interrupted else "Adapter saved"
    rows = "".join(f'<li data-present="{str(present).lower()}">{"✓" if present else "✗"} {html.escape(name)}</li>'
                   for name, present in files)
    return (f'<div class="lora-train-result"><b>{title}:</b> <code>{html.escape(path)}</code><ul>{rows}</ul>'
            'Test it in section 5, or load it with <code>PeftModel.from_pretrained(model, folder)</code>.</div>')
