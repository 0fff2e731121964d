"""What the Train LoRA tab shows that the LLM tab does not: the saved LoRA (its files and prompt tag) and the
"Test now" renders side by side. Plain HTML with inline PNG, as the rest of the tab's markup (`kit.markup`)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image


def result(lora_path: str, files: list[tuple[str, bool]], tag: str, interrupted: bool) -> str:
    """The end of a job: where the LoRA is, which companion files exist, the tag to use."""
    title = "Partial LoRA saved (interrupted)" if interrupted else "LoRA saved"
    rows = "".join(f'<li data-present="{str(present).lower()}">{"✓" if present else "✗"} {html.escape(name)}</li>'
                   for name, present in files)
    name = html.escape(Path(lora_path).stem)  # the Lora card's data-name; javascript/ shows the card by it
    return (f'<div class="lora-train-result" data-lora-name="{name}"><b>{title}:</b> '
            f'<code>{html.escape(lora_path)}</code>'
            f'<ul>{rows}</ul>Use it in a prompt with <code>{html.escape(tag)}</code></div>')


def comparison(images: list[tuple[Image.Image, str]]) -> str:
    """Renders side by side, each at its own size (smaller only where the page is too narrow) under its label."""
    figures = []
    for image, label in images:
        data = io.BytesIO()
        image.save(data, format="PNG")
        source = base64.b64encode(data.getvalue()).decode("ascii")
        figures.append(f'<figure data-label="{html.escape(label)}"><img src="data:image/png;base64,{source}" '
                       f'width="{image.width}" height="{image.height}" alt="{html.escape(label)}">'
                       f"<figcaption>{html.escape(label)}</figcaption></figure>")
    return f'<div class="lora-train-comparison">{"".join(figures)}</div>'
