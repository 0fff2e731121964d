"""metadata.csv: one row per image, `filename,prompt`, with a header line.

The header may also use the Hugging Face imagefolder names (`file_name`, `text`) or `caption`;
other columns are ignored. Text encoding is handled as for caption files (UTF-8, BOM, fallback
with a warning). Structural problems (no such columns, broken quoting, short rows) are UserErrors
naming the file and line; whether the named images exist is the scanner's business.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lora_train.data.captions import decode_text
from lora_train.core.errors import UserError

FILENAME_COLUMNS = ("filename", "file_name")
PROMPT_COLUMNS = ("prompt", "text", "caption")


@dataclass(frozen=True)
class MetadataRow:
    line: int  # line number in the file, for messages
    filename: str
    prompt: str


def read_metadata_csv(path: Path) -> tuple[list[MetadataRow], list[str]]:
    """(rows, warnings) of a metadata.csv."""
    try:
        text, encoding_warning = decode_text(path.read_bytes())
    except OSError as exc:
        raise UserError(f"metadata_path {path} cannot be read ({exc.strerror or exc}): check the path.") from None
    warnings = [f"{path}: {encoding_warning}"] if encoding_warning else []
    records = _records(csv.reader(io.StringIO(text, newline=""), strict=True), path)
    header = next(records, None)
    if header is None:
        raise UserError(f"{path} is empty: write a header line `filename,prompt`, then one row per image.")
    names = [cell.strip().lower() for cell in header[1]]
    file_col = _column(names, FILENAME_COLUMNS, path)
    prompt_col = _column(names, PROMPT_COLUMNS, path)
    rows = [_row(cells, line, file_col, prompt_col, path) for line, cells in records]
    if not rows:
        raise UserError(f"{path} has a header but no rows: add one line `filename,prompt` per image.")
    return rows, warnings


def _records(reader, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line it starts on, cells) of each non-blank record. Broken quoting is a UserError naming the line where
    the broken record starts (csv notices an unclosed quote only at the end of the file)."""
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem = "a double quote opened on this line is never closed" if "end of data" in str(exc) else exc
            raise UserError(f"{path} line {start}: {problem}. A prompt containing commas or quotes must be in "
                            f'double quotes, with its own quotes doubled: a.png,"red, ""shiny"" car".') from None
        if any(cell.strip() for cell in cells):
            yield start, cells


def _column(names: list[str], accepted: tuple[str, ...], path: Path) -> int:
    for name in accepted:
        if name in names:
            return names.index(name)
    raise UserError(f"{path}: the header line must name the columns filename,prompt (found: {', '.join(names)}). "
                    f"Make the first line `filename,prompt`.")


def _row(cells: list[str], line: int, file_col: int, prompt_col: int, path: Path) -> MetadataRow:
    if len(cells) <= max(file_col, prompt_col):
        raise UserError(f"{path} line {line}: expected the columns filename,prompt, found {len(cells)} value(s) "
                        f"({','.join(cells)}). Fix the row (quote prompts that contain commas) or remove it.")
    filename = cells[file_col].strip()
    if not filename:
        raise UserError(f"{path} line {line}: the filename is empty. Fill it in or remove the row.")
    return MetadataRow(line, filename, cells[prompt_col].strip())
