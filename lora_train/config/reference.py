"""The config reference, generated from the schema (docs/config.md and `config --help`)."""

from __future__ import annotations

import typing
from dataclasses import fields

from .load import default_value, unwrap_optional
from ..text.schema import GROUP as TEXT_GROUP, TextConfig
from .schema import GROUPS, TrainConfig


def _type_name(hint) -> str:
    optional, base = unwrap_optional(hint)
    origin = typing.get_origin(base)
    name = "list of text" if origin is list else "mapping" if origin is dict else \
        {int: "int", float: "float", bool: "bool", str: "text"}[base]
    return f"{name} or empty" if optional else name


def _format_default(value) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "" or value == [] or value == {}:
        return "(empty)" if value == "" else repr(value)
    return str(value)


def reference_markdown() -> str:
    """Every key grouped by section: type, default, allowed values or range, and help."""
    lines = ["# Config reference", "",
             "Generated from `lora_train/config/schema.py` by `python -m lora_train config --markdown`; "
             "do not edit by hand.", "",
             "A config is a flat YAML file of `key: value` lines. Any key can also be set on the command line "
             "with `--set key=value`. Relative paths start from the current directory.", ""]
    for group in GROUPS:
        lines += [f"## {group}", ""] + _table(TrainConfig, group)
    lines += [f"## {TEXT_GROUP} (task_type: text-generation)", "",
              "A config with `task_type: text-generation` trains a LoRA on a causal language model (also run by "
              "`python -m lora_train llm --config x.yaml`). It takes these keys only; those shared with the image "
              "side mean the same there.", ""] + _table(TextConfig, TEXT_GROUP)
    return "\n".join(lines)


def _table(schema: type, group: str) -> list[str]:
    hints = typing.get_type_hints(schema)
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for spec in fields(schema):
        meta = spec.metadata
        if meta["group"] != group:
            continue
        allowed = ", ".join(map(str, meta["choices"])) if meta["choices"] else ""
        if meta["min"] is not None:
            allowed = f"{meta['min']:g} to {meta['max']:g}"
        if meta["path"]:
            allowed = f"existing {meta['path'].replace('_', ' ')}"
        lines.append(f"| `{spec.name}` | {_type_name(hints[spec.name])} | "
                     f"{_format_default(default_value(spec.name, schema))} | {allowed} | {meta['help']} |")
    return lines + [""]
