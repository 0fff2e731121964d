"""The strength grid as one labelled image, and its parameters beside it (PIL only, no torch).

Shared by the worker (which renders the cells with the engine's pipeline) and the WebUI process
(which renders them with the WebUI's own txt2img), so it imports neither torch nor the WebUI.
Rows are the first LoRA's weights, columns the second's; each list always holds 0, the baseline.
Each label stays in its own box at every cell size: a column's label within the column's width, a row's
within the row's height. It is wrapped (after `_`, `-`, `:` or a space where it can be), in a font that
grows with the cells where Pillow allows it, and a name too long even so is shortened in its middle.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .atomic import write_new_file
from .errors import UserError

PAD = 4  # between a label and the edges of its box
MIN_FONT, CELL_PER_FONT = 10, 24  # the labels' font size: a 24th of the cell, at least 10 px
MIN_ROW_BAND = 96  # the width of the row labels' band, at least
HEADER_LINES = 3  # a column label longer than this many lines is shortened
ELLIPSIS = "..."  # in a shortened name (the bitmap font of older Pillow versions has no "…")


def parse_weights(text: str, what: str) -> list[float]:
    """`0.5, 1` -> [0.0, 0.5, 1.0]: the weights in the order given, with 0 added first when missing."""
    try:
        weights = [float(part) for part in str(text or "").replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a list of numbers; write e.g. 0.4, 0.8, 1.") from None
    weights = list(dict.fromkeys(weights))
    return weights if 0.0 in weights else [0.0, *weights]


@dataclass
class GridSpec:
    """What a grid shows: up to two LoRAs (by name, with their weights) and the render settings."""

    loras: list[str]
    weights: list[list[float]]
    prompt: str
    negative_prompt: str = ""
    seed: int = 1234
    width: int = 512
    height: int = 512
    steps: int = 20
    base_model: str = ""
    infotexts: list[str] = field(default_factory=list)  # the WebUI's generation parameters of each cell

    def cells(self) -> list[tuple[float, float | None]]:
        """(row weight, column weight or None) in row-major order."""
        columns = self.weights[1] if len(self.weights) > 1 else [None]
        return [(row, column) for row in self.weights[0] for column in columns]

    def prompt_for(self, row: float, column: float | None) -> str:
        """The prompt with the WebUI's `<lora:name:w>` tags of the non-zero weights."""
        tags = [f"<lora:{name}:{weight:g}>" for name, weight in zip(self.loras, (row, column))
                if weight not in (None, 0.0)]
        return " ".join([self.prompt.strip(), *tags]).strip()


@dataclass(frozen=True)
class Label:
    """One label: the box it stays in and its lines, each at the point it is drawn from."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    lines: list[tuple[tuple[int, int], str]]


@dataclass(frozen=True)
class GridLayout:
    """Where the cells start (the label bands' width and height) and every label."""

    left: int
    top: int
    font: ImageFont.ImageFont
    labels: list[Label]


def label_font(width: int, height: int) -> ImageFont.ImageFont:
    """The default font at a size that follows the cells (older Pillow versions have one size only)."""
    try:
        return ImageFont.load_default(size=max(MIN_FONT, min(width, height) // CELL_PER_FONT))
    except TypeError:
        return ImageFont.load_default()


def wrap(text: str, width: int, font: ImageFont.ImageFont) -> list[str]:
    """The text in lines no wider than `width`, broken after `_`, `-`, `:` or a space where it can be, else
    between two characters."""
    lines, line = [], ""
    for piece in re.findall(r"[^_\-:\s]*[_\-:\s]?", text):
        if font.getlength((line + piece).rstrip()) <= width:
            line += piece
            continue
        lines.append(line.rstrip())
        line = piece.lstrip()
        while font.getlength(line.rstrip()) > width and len(line) > 1:
            cut = next(k for k in range(len(line) - 1, 0, -1) if font.getlength(line[:k]) <= width or k == 1)
            lines.append(line[:cut])
            line = line[cut:]
    return [part for part in [*lines, line.rstrip()] if part]


def fit(name: str, suffix: str, width: int, max_lines: int, font: ImageFont.ImageFont) -> list[str]:
    """`name + suffix` wrapped to `width`; when it needs more than `max_lines` lines, the name is shortened in
    its middle (the suffix, the weight, is always whole)."""
    lines, kept = wrap(name + suffix, width, font), len(name)
    while len(lines) > max(max_lines, 1) and kept > 2:
        kept -= 1
        head = (kept + 1) // 2
        lines = wrap(name[:head] + ELLIPSIS + name[len(name) - (kept - head):] + suffix, width, font)
    return lines


def _placed(box: tuple[int, int, int, int], lines: list[str], font: ImageFont.ImageFont, line_height: int) -> Label:
    """The lines centred in the box."""
    left, top, right, bottom = box
    y = top + max(0, (bottom - top - line_height * len(lines)) // 2)
    return Label(box, [((left + max(0, (right - left - int(font.getlength(line))) // 2), y + index * line_height),
                        line) for index, line in enumerate(lines)])


def layout(spec: GridSpec, width: int, height: int) -> GridLayout:
    """The label bands and the labels for cells of `width` x `height`: each label inside its own box (its cell's
    width above a column, its row's height left of a row), wrapped to fit, at every cell size."""
    font = label_font(width, height)
    line_height = font.getbbox("Ag_|")[3] + 2
    left = max(MIN_ROW_BAND, 6 * font.getbbox("Ag_|")[3])
    header = spec.weights[1] if len(spec.weights) > 1 else [None]
    column_lines = [fit(spec.loras[1], f": {weight:g}", width - 2 * PAD, HEADER_LINES, font) if weight is not None
                    else fit(spec.loras[0], "", width - 2 * PAD, HEADER_LINES, font) for weight in header]
    top = line_height * max(len(lines) for lines in column_lines) + 2 * PAD
    labels = [_placed((left + column * width + PAD, PAD, left + (column + 1) * width - PAD, top - PAD), lines, font,
                      line_height) for column, lines in enumerate(column_lines)]
    for row, weight in enumerate(spec.weights[0]):
        box = (PAD, top + row * height + PAD, left - PAD, top + (row + 1) * height - PAD)
        lines = fit(spec.loras[0], f": {weight:g}", box[2] - box[0], (box[3] - box[1]) // line_height, font)
        labels.append(_placed(box, lines, font, line_height))
    return GridLayout(left, top, font, labels)


def compose_grid(spec: GridSpec, images: list[Image.Image]) -> Image.Image:
    """The cells (row-major, as `spec.cells()`) with the weights written above the columns and left of the rows."""
    columns = len(spec.weights[1]) if len(spec.weights) > 1 else 1
    rows = len(spec.weights[0])
    width, height = images[0].size
    placed = layout(spec, width, height)
    grid = Image.new("RGB", (placed.left + columns * width, placed.top + rows * height), "white")
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid.paste(image.convert("RGB").resize((width, height)), (placed.left + column * width,
                                                                 placed.top + row * height))
    draw = ImageDraw.Draw(grid)
    for label in placed.labels:
        for origin, line in label.lines:
            draw.text(origin, line, fill="black", font=placed.font)
    return grid


def save_grid(folder: Path, spec: GridSpec, grid: Image.Image) -> tuple[Path, Path]:
    """`stack-<time>.png` and `stack-<time>.json` (the parameters) in `folder`, never over existing files."""
    stem = "stack-" + time.strftime("%Y%m%d-%H%M%S")
    candidate, number = stem, 1
    while (folder / f"{candidate}.png").exists() or (folder / f"{candidate}.json").exists():
        number += 1
        candidate = f"{stem}-{number}"
    image = write_new_file(folder / f"{candidate}.png", lambda temporary: grid.save(temporary, format="PNG"))
    text = json.dumps(asdict(spec), indent=2, ensure_ascii=False)
    params = write_new_file(folder / f"{candidate}.json", lambda temporary: temporary.write_text(text, "utf-8"))
    return image, params
