"""The config keys as form fields: one widget kind per key, read from the schema, and back.

Every key of `TrainConfig` gets a field, so a new key shows up in the tab without UI code.
A few keys the tab sets itself (the base model, dataset, names and folders, resume) and the
text-LLM keys are left out of the generic form. Values typed into the form are only converted
here; `build_config` validates them with the same messages as the CLI.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ...config.load import build_config, default_value, read_yaml
from ...config.schema import TrainConfig
from ...core.errors import UserError

MANAGED_KEYS = ("task_type", "base_model", "vae", "train_data_dir", "trigger_word", "output_name", "output_dir",
                "lora_output_dir", "resume_from_checkpoint")
BASIC_KEYS = ("lora_rank", "lora_alpha", "learning_rate", "text_encoder_lr", "epochs", "resolution", "batch_size")


@dataclass(frozen=True)
class FieldSpec:
    """One config key as a form field."""

    name: str
    kind: str  # bool | choice | multi | int | float | text | lines | mapping
    optional: bool
    default: Any
    help: str
    group: str
    choices: tuple | None

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def _kind(hint: Any, choices: tuple | None) -> tuple[str, bool]:
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin = typing.get_origin(hint)
    if origin is list:
        return ("multi" if choices else "lines"), optional
    if origin is dict:
        return "mapping", optional
    if choices:
        return "choice", optional
    return {bool: "bool", int: "int", float: "float"}.get(hint, "text"), optional


def field_specs(schema: type = TrainConfig, managed: tuple[str, ...] = MANAGED_KEYS) -> list[FieldSpec]:
    """The form fields: every key of `schema` (the image one unless told) except the managed ones."""
    hints = typing.get_type_hints(schema)
    specs = []
    for spec in fields(schema):
        meta = spec.metadata
        if spec.name in managed:
            continue
        kind, optional = _kind(hints[spec.name], meta["choices"])
        specs.append(FieldSpec(spec.name, kind, optional, default_value(spec.name, schema), meta["help"],
                               meta["group"], meta["choices"]))
    return specs


def to_widget(spec: FieldSpec, value: Any) -> Any:
    """A config value as the widget shows it (numbers that may be empty and lists are text)."""
    if value is None:
        return "" if spec.kind in ("int", "float", "text", "lines", "mapping") and spec.optional else value
    if spec.kind == "lines":
        return "\n".join(str(item) for item in value)
    if spec.kind == "mapping":
        return yaml.safe_dump(value, default_flow_style=True).strip() if value else ""
    if spec.kind in ("int", "float") and spec.optional:
        return str(value)
    return value


def from_widget(spec: FieldSpec, value: Any) -> Any:
    """A widget's value as a config value; `build_config` checks it afterwards."""
    if isinstance(value, str):
        value = value.strip()
    if spec.kind == "lines":
        items = [line.strip() for line in (value or "").splitlines() if line.strip()]
        return items or (None if spec.optional else [])
    if spec.kind == "mapping":
        if not value:
            return {}
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"'{spec.name}' must be a mapping like {{betas: [0.9, 0.99]}}, got {value!r}.") from None
    if spec.kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if value == "" and spec.optional:
        return None
    return value


def form_values(specs: list[FieldSpec], widget_values: list[Any]) -> dict[str, Any]:
    return {spec.name: from_widget(spec, value) for spec, value in zip(specs, widget_values)}


def validate(values: dict[str, Any], check_paths: bool = True) -> TrainConfig:
    """The config the worker will run, or the CLI's own UserError."""
    return build_config(values, "the tab's settings", check_paths)


def changed_values(config: Any) -> dict[str, Any]:
    """The keys whose value differs from the default, in schema order: a short, readable YAML."""
    schema = type(config)
    return {spec.name: getattr(config, spec.name) for spec in fields(schema)
            if getattr(config, spec.name) != default_value(spec.name, schema)}


def dump_yaml(values: dict[str, Any]) -> str:
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def read_config_file(path: Path) -> dict[str, Any]:
    """The keys of a config YAML, refusing unknown ones with the CLI's message (required keys may be missing)."""
    values = read_yaml(path)
    for key in values:
        if key not in TrainConfig.keys():
            build_config({key: values[key]}, str(path), check_paths=False)  # raises "Unknown key ... Did you mean"
    return values
