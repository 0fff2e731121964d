"""The strength grid's labels fit their cells at every cell size from 64 to 1536 px, with long names: each
column label stays inside its column, each row label inside its row, and no character is lost unless a name
is too long for the box (then it is shortened in its middle, and the weight stays whole)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from lora_train.core.grid_image import ELLIPSIS, GridSpec, compose_grid, layout

NAMES = [("artist_a_v2", "artist_b"), ("a_really_long_lora_name_from_a_merge_v12", "another-long-style-name_v3"),
         ("style", "x")]
SIZES = [64, 96, 200, 512, 1536]


@pytest.fixture(autouse=True, params=["scaled", "bitmap"])
def font(request, monkeypatch):
    """The default font at the cells' size, and the one-size bitmap font of the Pillow the WebUI ships (9.5)."""
    if request.param == "bitmap":
        use_bitmap_font(monkeypatch)


def use_bitmap_font(monkeypatch) -> None:
    """Pillow's default font as Pillow 9.5 (A1111's) has it: one size, bitmap (the same glyphs)."""
    def load_default(size=None):
        if size is not None:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return ImageFont.load_default_imagefont()
    monkeypatch.setattr(ImageFont, "load_default", load_default)


def spec_of(names: tuple[str, str], size: int, rows=(0.0, 0.5, 1.0), columns=(0.0, 0.25, 0.75)) -> GridSpec:
    return GridSpec(list(names), [list(rows), list(columns)], "a cat", width=size, height=size)


def changed(size: int, first: GridSpec, second: GridSpec) -> np.ndarray:
    """Where two grids of blank cells differ: the pixels of the labels that differ between them."""
    cells = [Image.new("RGB", (size, size), "white")] * 9
    one, two = compose_grid(first, cells), compose_grid(second, cells)
    assert one.size == two.size
    return np.asarray(one.convert("L")) != np.asarray(two.convert("L"))


def renamed(name: str) -> str:
    return name[:-1] + ("d" if name[-1] != "d" else "b")  # the last character changed, the width kept


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("names", NAMES)
def test_each_label_is_drawn_whole_inside_its_own_column_or_row(names, size):
    spec = spec_of(names, size)
    height, width = changed(size, spec, spec).shape
    left, top = width - 3 * size, height - 3 * size  # the label bands
    for column, weight in enumerate((1.0, 0.35, 0.85)):  # one column's weight changed: only its label changes
        weights = list(spec.weights[1])
        weights[column] = weight
        diff = changed(size, spec, spec_of(names, size, columns=weights))
        inside = diff[:top, left + column * size:left + (column + 1) * size]
        assert inside.any() and inside.sum() == diff.sum(), f"column {column}'s label leaves its column at {size} px"
    for row, weight in enumerate((1.0, 0.6, 2.0)):
        weights = list(spec.weights[0])
        weights[row] = weight
        diff = changed(size, spec, spec_of(names, size, rows=weights))
        inside = diff[top + row * size:top + (row + 1) * size, :left]
        assert inside.any() and inside.sum() == diff.sum(), f"row {row}'s label leaves its row at {size} px"
    diff = changed(size, spec, spec_of((renamed(names[0]), renamed(names[1])), size))
    for column in range(3):
        assert diff[:top, left + column * size:left + (column + 1) * size].any(), \
            f"column {column}'s label lost the end of its name at {size} px"
    for row in range(3):
        assert diff[top + row * size:top + (row + 1) * size, :left].any(), \
            f"row {row}'s label lost the end of its name at {size} px"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("names", NAMES)
def test_each_drawn_line_lies_in_its_box_and_the_label_reads_whole(names, size):
    assert_labels_fit(spec_of(names, size), size)


def assert_labels_fit(spec: GridSpec, size: int) -> None:
    """Each label's drawn lines (their text boxes, measured) lie inside its box, and it reads whole: the name and
    the weight, or the name shortened in its middle (only in cells under 200 px) and the weight whole."""
    names = spec.loras
    placed = layout(spec, size, size)
    draw = ImageDraw.Draw(Image.new("RGB", (placed.left + 3 * size, placed.top + 3 * size)))
    expected = [f"{names[1]}: {weight:g}" for weight in spec.weights[1]] + \
               [f"{names[0]}: {weight:g}" for weight in spec.weights[0]]
    assert len(placed.labels) == len(expected)
    for label, text in zip(placed.labels, expected):
        left, top, right, bottom = label.box
        for origin, line in label.lines:
            x0, y0, x1, y1 = draw.textbbox(origin, line, font=placed.font)
            assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, (line, label.box, size)
        read = "".join(line for _, line in label.lines).replace(" ", "")
        if ELLIPSIS in read:
            head, tail = read.split(ELLIPSIS)
            weight = text.rsplit(": ", 1)[1]
            assert text.replace(" ", "").startswith(head) and tail.endswith(":" + weight) and len(head) > 2
        else:
            assert read == text.replace(" ", ""), f"characters lost at {size} px"
    if size >= 200:
        assert ELLIPSIS not in str(placed.labels), "names are shortened only in small cells"
