"""The strength grid as one labelled image, and its parameters beside it (PIL only, no torch).

Shared by the worker (which renders the cells with the engine's pipeline) and the WebUI process
(which renders them with the WebUI's own txt2img), so it imports neither torch nor the WebUI.
Rows are the first LoRA's weights, columns the second's; each list always holds 0, the baseline.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .atomic import write_new_file
from .errors import UserError

LABEL_HEIGHT, LABEL_WIDTH = 28, 96


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


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def compose_grid(spec: GridSpec, images: list[Image.Image]) -> Image.Image:
    """The cells (row-major, as `spec.cells()`) with the weights written above the columns and left of the rows."""
    columns = len(spec.weights[1]) if len(spec.weights) > 1 else 1
    rows = len(spec.weights[0])
    width, height = images[0].size
    grid = Image.new("RGB", (LABEL_WIDTH + columns * width, LABEL_HEIGHT + rows * height), "white")
    draw = ImageDraw.Draw(grid)
    font = _font()
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid.paste(image.convert("RGB").resize((width, height)), (LABEL_WIDTH + column * width,
                                                                 LABEL_HEIGHT + row * height))
    for row, weight in enumerate(spec.weights[0]):
        draw.text((4, LABEL_HEIGHT + row * height + height // 2 - 6), f"{spec.loras[0][:10]}: {weight:g}",
                  fill="black", font=font)
    header = spec.weights[1] if len(spec.weights) > 1 else [None]
    for column, weight in enumerate(header):
        text = f"{spec.loras[1][:14]}: {weight:g}" if weight is not None else spec.loras[0][:20]
        draw.text((LABEL_WIDTH + column * width + 4, 8), text, fill="black", font=font)
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
