"""Read text training data into conversations: alpaca, chat `messages`, ShareGPT `conversations`, raw .txt.

Every row becomes a list of turns `{"role": system|user|assistant, "content": str}`; a .txt file
becomes one raw document. A row that cannot be used is reported with its file and line number
(the run goes on without it); when no row at all is usable the run is refused. Files are decoded as
the image side reads captions (`data.captions.decode_text`: UTF-8, a UTF-16 byte-order mark honoured,
else Windows-1252 with a warning), never with characters silently replaced. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..data.captions import decode_text

DATA_SUFFIXES = (".jsonl", ".json", ".txt")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "model": "assistant", "system": "system"}
_ROLES = ("system", "user", "assistant")
FORMAT_HELP = ("Each row needs alpaca keys (instruction, optional input, output), a `messages` list of "
               "{role, content} or a ShareGPT `conversations` list of {from, value}, with at least one assistant "
               "answer.")


@dataclass
class TextRows:
    conversations: list[list[dict[str, str]]] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # raw .txt files
    problems: list[str] = field(default_factory=list)  # "file:line: what is wrong"
    warnings: list[str] = field(default_factory=list)  # "file: read as Windows-1252 ..."


def read_rows(paths: list[Path]) -> TextRows:
    """All rows of the given files; UserError when not one row can be used."""
    rows = TextRows()
    for path in paths:
        text, warning = decode_text(path.read_bytes())
        if warning:
            rows.warnings.append(f"{path}: {warning}")
        if path.suffix.lower() == ".txt":
            if text.strip():
                rows.documents.append(text)
            else:
                rows.problems.append(f"{path}: the file is empty")
            continue
        for line, record in _records(path, text, rows.problems):
            try:
                rows.conversations.append(to_conversation(record))
            except ValueError as exc:
                rows.problems.append(f"{path}:{line}: {exc}")
    if not rows.conversations and not rows.documents:
        shown = "; ".join(rows.problems[:5]) or "no rows"
        raise UserError(f"No usable training row in {', '.join(map(str, paths))} ({shown}). {FORMAT_HELP}")
    return rows


def data_files(metadata_path: str | None, train_data_dir: str | None) -> list[Path]:
    """The data files a config names: metadata_path itself, or the data files in train_data_dir."""
    if metadata_path:
        path = Path(metadata_path)
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise UserError(f"metadata_path {path} is not a .jsonl, .json or .txt file.")
        return [path]
    folder = Path(train_data_dir or ".")
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    if not found:
        raise UserError(f"train_data_dir {folder} holds no .jsonl, .json or .txt file.")
    return found


def _records(path: Path, text: str, problems: list[str]) -> list[tuple[int, Any]]:
    """(line number, parsed object) for each row of `path`'s text; broken lines go to `problems`."""
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). A .json "
                            "file must hold one list of rows; or write one row per line as .jsonl.") from None
        if not isinstance(data, list):
            raise UserError(f"{path} must hold a list of rows ([{{...}}, {{...}}]), not a {type(data).__name__}.")
        return [(index + 1, item) for index, item in enumerate(data)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})")
    return records


def to_conversation(record: Any) -> list[dict[str, str]]:
    """One row as turns; ValueError saying what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"a row must be a JSON object, not {type(record).__name__}")
    if "messages" in record:
        turns = [_turn(item, "role", "content", {r: r for r in _ROLES}) for item in _list(record, "messages")]
    elif "conversations" in record:
        turns = [_turn(item, "from", "value", _SHAREGPT_ROLES) for item in _list(record, "conversations")]
        if isinstance(record.get("system"), str) and record["system"].strip():
            turns.insert(0, {"role": "system", "content": record["system"]})
    elif "instruction" in record or "output" in record:
        instruction, extra, output = (_text(record, key) for key in ("instruction", "input", "output"))
        if not instruction.strip() or not output.strip():
            raise ValueError("an alpaca row needs a non-empty `instruction` and `output`")
        turns = [{"role": "user", "content": f"{instruction}\n\n{extra}" if extra.strip() else instruction},
                 {"role": "assistant", "content": output}]
        if _text(record, "system").strip():
            turns.insert(0, {"role": "system", "content": _text(record, "system")})
    else:
        raise ValueError(f"unknown row format (keys: {', '.join(map(str, record)) or 'none'})")
    if not any(turn["role"] == "assistant" and turn["content"].strip() for turn in turns):
        raise ValueError("the row has no assistant answer to learn")
    return turns


def _list(record: dict, key: str) -> list:
    value = record[key]
    if not isinstance(value, list) or not value:
        raise ValueError(f"`{key}` must be a non-empty list")
    return value


def _turn(item: Any, role_key: str, content_key: str, roles: dict[str, str]) -> dict[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get(content_key), str):
        raise ValueError(f"each turn needs `{role_key}` and a text `{content_key}`")
    role = roles.get(str(item.get(role_key, "")).lower())
    if role is None:
        raise ValueError(f"unknown {role_key} {item.get(role_key)!r} (use {', '.join(sorted(set(roles)))})")
    return {"role": role, "content": item[content_key]}


def _text(record: dict, key: str) -> str:
    value = record.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"`{key}` must be text")
    return value
