"""HTML for the tabs' live parts: messages, the progress bar, the loss chart.

Plain HTML and inline SVG, so they look the same under every gradio version and need no
plotting library in the WebUI process.
"""

from __future__ import annotations

import html
import math
import traceback

from ...core.errors import UserError

CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 480, 160, 6
CHART_LEFT, CHART_RIGHT, CHART_BOTTOM = 52, 16, 30  # room for the axes' labels
SMOOTHING = 0.6  # TensorBoard's default


def message(text: str, level: str = "info") -> str:
    """A message box; level is info, warning, error or success."""
    if not text:
        return ""
    lines = "<br>".join(html.escape(line) for line in text.strip().splitlines())
    return f'<div class="lora-train-message lora-train-{level}" data-level="{level}">{lines}</div>'


def problem(exc: Exception) -> str:
    """What the page says about an error: a UserError's text; for a bug one line (the traceback goes to the console)."""
    if isinstance(exc, UserError):
        return str(exc)
    traceback.print_exc()
    return f"Unexpected problem ({type(exc).__name__}: {exc}). The details were printed to the console."


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


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so that it starts at the first value."""
    average, out = 0.0, []
    for index, value in enumerate(values):
        average = average * weight + (1 - weight) * value
        out.append(average / (1 - weight ** (index + 1)))
    return out


def _ticks(low: float, high: float) -> list[float]:
    """Three or more round values from low to high for an axis."""
    span = max(high - low, 1e-12)
    step = 10 ** math.floor(math.log10(span / 2))
    step *= next(factor for factor in (1, 2, 5, 10) if span / (step * factor) <= 5)
    first = math.ceil(low / step) * step
    return [first + index * step for index in range(int((high - first) / step + 1e-9) + 1)]


def loss_chart(points: list[tuple[int, float]], eval_points: list[tuple[int, float]] | None = None) -> str:
    """An SVG chart of the loss over the steps: axes (step, loss) with ticks, the raw per-step values faint and
    their smoothed line bold, as TensorBoard draws them, and the eval loss as circles (empty until there are two
    points)."""
    points = [(step, loss) for step, loss in points if math.isfinite(loss)]
    evals = [(step, loss) for step, loss in eval_points or [] if math.isfinite(loss)]
    if len(points) < 2:
        return ""
    steps, losses = [step for step, _ in points], [loss for _, loss in points]
    every_step, every_loss = steps + [step for step, _ in evals], losses + [loss for _, loss in evals]
    first, last, low, high = min(every_step), max(every_step), min(every_loss), max(every_loss)
    span_x, span_y = max(last - first, 1), max(high - low, 1e-12)
    left, bottom = CHART_LEFT, CHART_HEIGHT - CHART_BOTTOM
    width, height = CHART_WIDTH - left - CHART_RIGHT, bottom - CHART_PAD

    def x(step: float) -> float:
        return left + (step - first) / span_x * width

    def y(loss: float) -> float:
        return CHART_PAD + (high - loss) / span_y * height

    def line(values: list[float], css: str) -> str:
        coords = " ".join(f"{x(step):.1f},{y(value):.1f}" for step, value in zip(steps, values))
        return f'<polyline class="{css}" fill="none" points="{coords}"/>'

    y_ticks = "".join(f'<line x1="{left - 3}" x2="{left}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                      f'<text x="{left - 5}" y="{y(v) + 3:.1f}" text-anchor="end">{v:.3g}</text>'
                      for v in _ticks(low, high))
    x_ticks = "".join(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{bottom}" y2="{bottom + 3}"/>'
                      f'<text x="{x(v):.1f}" y="{bottom + 14}" text-anchor="middle">{v:g}</text>'
                      for v in _ticks(first, last) if v == int(v))
    middle = CHART_PAD + height / 2
    axes = (f'<g class="lora-train-axes"><line x1="{left}" x2="{left}" y1="{CHART_PAD}" y2="{bottom}"/>'
            f'<line x1="{left}" x2="{CHART_WIDTH - CHART_RIGHT}" y1="{bottom}" y2="{bottom}"/>{y_ticks}{x_ticks}'
            f'<text class="lora-train-axis-label" x="{left + width / 2:.1f}" y="{CHART_HEIGHT - 2}" '
            f'text-anchor="middle">step</text><text class="lora-train-axis-label" x="10" y="{middle:.1f}" '
            f'text-anchor="middle" transform="rotate(-90 10 {middle:.1f})">loss</text></g>')
    trend = smoothed(losses)
    dots = "".join(f'<circle class="lora-train-eval" cx="{x(step):.1f}" cy="{y(loss):.1f}" r="4" fill="none" '
                   'stroke="currentColor" stroke-width="2"/>' for step, loss in evals)
    lowest = min(evals, key=lambda point: point[1]) if evals else None
    eval_text = f"; eval loss (circles) latest {evals[-1][1]:.4f}, lowest {lowest[1]:.4f} at step {lowest[0]}" \
        if lowest else ""
    return (f'<div class="lora-train-chart" data-points="{len(points)}" data-eval-points="{len(evals)}">'
            f'<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
            f'aria-label="training loss over steps">{axes}{line(losses, "lora-train-loss-raw")}'
            f'{line(trend, "lora-train-loss-smoothed")}{dots}</svg>'
            f'<div class="lora-train-chart-legend">loss, smoothed ({SMOOTHING:g}) over the faint per-step values: '
            f'{trend[0]:.4f} → {trend[-1]:.4f} (steps {first}-{last}); latest {losses[-1]:.4f}{eval_text}</div></div>')
