"""The tab's loss chart: axes with step and loss, the raw per-step values and TensorBoard's smoothed line."""

import re

import pytest

from lora_train.webui.kit import markup


def polyline(svg: str, css: str) -> list[tuple[float, float]]:
    points = re.search(rf'class="{css}"[^>]* points="([^"]+)"', svg).group(1)
    return [tuple(map(float, point.split(","))) for point in points.split()]


def test_the_smoothing_is_tensorboards():
    # TensorBoard: last = last * w + (1 - w) * v, shown as last / (1 - w ** n)
    assert markup.smoothed([1.0, 0.0, 0.0], 0.6) == pytest.approx([1.0, 0.6 * 0.4 / 0.64, 0.36 * 0.4 / 0.784])
    assert markup.smoothed([2.0] * 5) == pytest.approx([2.0] * 5)


def test_the_chart_has_axes_and_a_smoothed_line_over_the_raw_points():
    losses = [0.9, 0.2, 0.8, 0.1, 0.7, 0.15, 0.6, 0.1, 0.5, 0.12]
    chart = markup.loss_chart([(step, loss) for step, loss in enumerate(losses, start=1)])
    labels = re.findall(r"<text[^>]*>([^<]+)</text>", chart)
    assert "step" in labels and "loss" in labels
    assert {"2", "4", "6", "8", "10"} <= set(labels) and "0.2" in labels and "0.8" in labels  # ticks
    raw, smooth = polyline(chart, "lora-train-loss-raw"), polyline(chart, "lora-train-loss-smoothed")
    assert len(raw) == len(smooth) == len(losses) and [x for x, _ in raw] == [x for x, _ in smooth]
    wiggle = lambda line: sum(abs(a[1] - b[1]) for a, b in zip(line, line[1:]))  # noqa: E731
    assert wiggle(smooth) < wiggle(raw) / 3
    assert markup.loss_chart([(1, 0.5)]) == ""
