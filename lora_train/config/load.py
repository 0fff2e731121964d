"""Read a YAML config, apply `--set key=value` overrides, and validate every value.

Each refusal names the key, the bad value and what is allowed, as a `UserError`. Relative
paths are taken from the current directory, as typed on the command line.
"""

from __future__ import annotations

import difflib
import math
import os
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from ..core.errors import UserError
from ..core.naming import NAME_ADVICE, output_name_problem
from .schema import TrainConfig
from .strict_yaml import RepeatedKey, load_strict

_TYPE_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
_YAML_BOOL_WORDS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}


def add_override_option(parser) -> None:
    """`--set KEY=VALUE` (repeatable) on an argparse parser, read by `parse_overrides`: one option for every
    command that loads a config."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set lora_rank=8 (repeatable)")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["lora_rank=8", "sample_prompts=[a cat]"]` -> {"lora_rank": 8, ...}; values are read as YAML."""
    result = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: write it as key=value, e.g. --set lora_rank=8")
        try:
            result[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            result[key.strip()] = text
    return result


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file, or a UserError that says where the file is broken."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Config file {path} does not exist. Start from one of the examples in configs/.")
    try:
        data = load_strict(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"Config file {path} is not UTF-8 text. Save it as UTF-8 and try again.") from None
    except RepeatedKey as exc:
        raise UserError(f"Config file {path} sets {exc.key!r} twice (lines {exc.first_line} and {exc.line}): "
                        "only one value can apply. Delete the line you do not want.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"Config file {path} is not valid YAML{where}: {problem}. "
                        "Each line should read `key: value`.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"Config file {path} must hold `key: value` lines, not a {type(data).__name__}.")
    return data


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
                check_paths: bool = True) -> Any:
    """Build a validated config from a YAML file (optional) and overrides (win over the file): a TrainConfig,
    or a TextConfig when task_type is text-generation."""
    values = read_yaml(path) if path is not None else {}
    values.update(overrides or {})
    source = str(path) if path is not None else "the settings"
    if values.get("task_type") == "text-generation":
        from ..text.schema import TextConfig, check_text_config

        return build_config(values, source, check_paths, TextConfig, check_text_config)
    return build_config(values, source, check_paths)


def build_config(values: dict[str, Any], source: str = "the settings", check_paths: bool = True,
                 schema: type = TrainConfig, check: Callable[[Any], None] | None = None) -> Any:
    """Validate a plain mapping of config keys into `schema` (default TrainConfig, checked by its own rules)."""
    known = {f.name: f for f in fields(schema)}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else " See docs/config.md for every key."
            kind = " (a text-generation config)" if schema is not TrainConfig else ""
            raise UserError(f"Unknown key '{key}' in {source}{kind}.{hint}")
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for name, spec in known.items():
        if name in values:
            kwargs[name] = _check_value(name, values[name], hints[name], spec.metadata, check_paths)
    config = schema(**kwargs)
    (check or _check_combinations)(config)
    return config


def _check_value(name: str, value: Any, hint: Any, meta: dict, check_paths: bool) -> Any:
    optional, base = unwrap_optional(hint)
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise UserError(f"'{name}' needs a value here ({_describe_type(base)}); it cannot be empty.")
    origin = typing.get_origin(base)
    if origin is list:
        items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
        value = [_check_scalar(name, item, str, meta) for item in items]
    elif origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"'{name}' must be a mapping like {{key: value}}, got {value!r}.")
    else:
        value = _check_scalar(name, value, base, meta)
    if meta.get("path") and check_paths:
        _check_path(name, value, meta["path"])
    return value


def _check_scalar(name: str, value: Any, kind: type, meta: dict) -> Any:
    choices = meta.get("choices")
    if kind is str and isinstance(value, bool) and choices:  # YAML reads an unquoted `no` / `off` as false
        value = next((word for word in _YAML_BOOL_WORDS[value] if word in choices), value)
    value = _coerce(name, value, kind)
    if choices and value not in choices:
        allowed = ", ".join(map(str, choices))
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"'{name}' cannot be {value!r}: allowed values are {allowed}.{hint}")
    low, high = meta.get("min"), meta.get("max")
    if kind in (int, float) and ((low is not None and value < low) or (high is not None and value > high)):
        raise UserError(f"'{name}' is {value}, out of range: it must be between {low} and {high}.")
    return value


def _coerce(name: str, value: Any, kind: type) -> Any:
    bad = UserError(f"'{name}' must be {_describe_type(kind)}, got {value!r}.")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "false", "no", "off"):
            return value.strip().lower() in ("true", "yes", "on")
        raise bad
    if kind is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        if isinstance(value, int):
            return value
        raise bad
    if kind is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):  # YAML reads `1e-4` (no dot) as text
            try:
                value = float(value.strip())
            except ValueError:
                raise bad from None
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        raise bad
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, bool):
            raise UserError(f"'{name}' must be text, got {value!r}: YAML reads an unquoted yes, no, on or off as "
                            "true or false, so put the value in quotes.")
        raise bad
    raise TypeError(f"unsupported config type {kind}")  # a schema bug, not a user error


def _check_path(name: str, value: Any, kind: str) -> None:
    if name == "resume_from_checkpoint" and value == "latest":
        return
    for item in value if isinstance(value, list) else [value]:
        path = Path(os.path.expanduser(str(item)))
        if not path.exists():
            raise UserError(f"'{name}': {path} does not exist. Check the path (relative paths start from "
                            f"{Path.cwd()}).")
        if kind == "file" and not path.is_file():
            files = sorted(item.name for item in path.glob("*.safetensors"))
            hint = f" It holds {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}: give one of them." \
                if files else ""
            raise UserError(f"'{name}': {path} is a folder; a file is needed here.{hint}")
        if kind == "dir" and not path.is_dir():
            raise UserError(f"'{name}': {path} is a file; a folder is needed here.")


def _check_combinations(config: TrainConfig) -> None:
    """Rules that involve more than one key."""
    needed = ["base_model"] + ([] if config.metadata_path else ["train_data_dir"])
    for key in needed:
        if not getattr(config, key):
            raise UserError(f"'{key}' is required for task_type {config.task_type}. Set it in the config file "
                            f"or with --set {key}=...")
    if config.min_bucket_reso > config.max_bucket_reso:
        raise UserError(f"'min_bucket_reso' ({config.min_bucket_reso}) is larger than 'max_bucket_reso' "
                        f"({config.max_bucket_reso}).")
    if config.resolution % 8:
        raise UserError(f"'resolution' is {config.resolution}: it must be a multiple of 8 (e.g. 512, 768, 1024).")
    _check_validation(config)
    if not (config.train_unet or config.train_text_encoder):
        raise UserError("Both 'train_unet' and 'train_text_encoder' are false: nothing would be trained.")
    problem = output_name_problem(config.output_name)
    if problem:
        raise UserError(f"'output_name' {config.output_name!r} cannot be used as a file name: {problem}. "
                        f"{NAME_ADVICE}")


def _check_validation(config: TrainConfig) -> None:
    """val_split or val_data_dir (not both); keep_best and early stop need one of them."""
    if config.val_split and config.val_data_dir:
        raise UserError("'val_split' and 'val_data_dir' are both set: hold out images of the training data "
                        "(val_split) or name a separate folder (val_data_dir), not both.")
    if config.val_split >= 1 and not float(config.val_split).is_integer():
        raise UserError(f"'val_split' is {config.val_split:g}: use a fraction below 1 (0.1) or a whole count of "
                        "images (5).")
    if not (config.val_split or config.val_data_dir):
        for key in ("keep_best", "early_stop_patience"):
            if getattr(config, key):
                raise UserError(f"'{key}' needs a validation loss: set val_split (images held out of the training "
                                "data) or val_data_dir (a folder of validation images).")


def unwrap_optional(hint: Any) -> tuple[bool, Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return True, args[0]
    return False, hint


def _describe_type(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is list:
        return "a list of text values"
    if origin is dict:
        return "a mapping"
    return _TYPE_NAMES.get(kind, str(kind))


def default_value(name: str, schema: type = TrainConfig) -> Any:
    """The default of a key, for the reference docs and the UI."""
    spec = {f.name: f for f in fields(schema)}[name]
    if spec.default is not MISSING:
        return spec.default
    return spec.default_factory()
