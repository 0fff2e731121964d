"""HTML for the tab's live parts: messages, the progress bar, the loss chart, the result.

Plain HTML and inline SVG, so they look the same under every gradio version and need no
plotting library in the WebUI process.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 480, 140, 6


def message(text: str, level: str = "info") -> str:
    """A message box; level is info, warning, error or success."""
    if not text:
        return ""
    lines = "<br>".join(html.escape(line) for line in text.strip().splitlines())
    return f'<div class="lora-train-message lora-train-{level}" data-level="{level}">{lines}</div>'


def messages(items: list[tuple[str, str]]) -> str:
    return "".join(message(text, level) for text, level in items)


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress(status: str, step: int, total: int | None, epoch: int | None, epochs: int | None,
             its: float | None, eta_s: float | None, loss: float | None) -> str:
    """The progress bar with step, epoch, speed and time left."""
    fraction = min(1.0, step / total) if total else 0.0
    parts = [f"step {step}/{total or '?'}"]
    if epoch is not None:
        parts.append(f"epoch {epoch}/{epochs or '?'}")
    if its:
        parts.append(f"{its:.2f} it/s" if its >= 1 else f"{1 / its:.1f} s/it")
    if eta_s is not None and status == "running":
        parts.append(f"ETA {duration(eta_s)}")
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    text = html.escape(" · ".join(parts))
    return (f'<div class="lora-train-progress" data-status="{html.escape(status)}" data-step="{step}" '
            f'data-total="{total or 0}"><div class="lora-train-bar"><div class="lora-train-fill" '
            f'style="width:{fraction * 100:.1f}%"></div></div><div class="lora-train-progress-text">'
            f'{html.escape(status)}: {text}</div></div>')


def loss_chart(points: list[tuple[int, float]]) -> str:
    """An SVG line of the loss over the steps (empty until there are two points)."""
    points = [(step, loss) for step, loss in points if math.isfinite(loss)]
    if len(points) < 2:
        return ""
    first, last = points[0][0], points[-1][0]
    low, high = min(loss for _, loss in points), max(loss for _, loss in points)
    span_x, span_y = max(last - first, 1), max(high - low, 1e-12)
    width, height = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD
    coords = " ".join(f"{CHART_PAD + (step - first) / span_x * width:.1f},"
                      f"{CHART_PAD + (high - loss) / span_y * height:.1f}" for step, loss in points)
    return (f'<div class="lora-train-chart"><svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
            f'preserveAspectRatio="none" role="img" aria-label="training loss">'
            f'<polyline fill="none" stroke="currentColor" stroke-width="2" points="{coords}"/></svg>'
            f'<div class="lora-train-chart-legend">loss {high:.4f} → {low:.4f} (steps {first}-{last}); latest '
            f'{points[-1][1]:.4f}</div></div>')


def result(lora_path: str, files: list[tuple[str, bool]], tag: str, interrupted: bool) -> str:
    """The end of a job: where the LoRA is, which companion files exist, the tag to use."""
    title = "Partial LoRA saved (interrupted)" if interrupted else "LoRA saved"
    rows = "".join(f'<li data-present="{str(present).lower()}">{"✓" if present else "✗"} {html.escape(name)}</li>'
                   for name, present in files)
    name = html.escape(Path(lora_path).stem)  # the Lora card's data-name; javascript/ shows the card by it
    return (f'<div class="lora-train-result" data-lora-name="{name}"><b>{title}:</b> '
            f'<code>{html.escape(lora_path)}</code>'
            f'<ul>{rows}</ul>Use it in a prompt with <code>{html.escape(tag)}</code></div>')
