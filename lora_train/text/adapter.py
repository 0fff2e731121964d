"""The saved text LoRA: a standard PEFT folder plus the template and the training settings.

`output_dir/<output_name>/` holds adapter_model.safetensors and adapter_config.json (loadable with
`PeftModel.from_pretrained`), the tokenizer with the chat template the model was trained on (so
inference formats prompts the same way), `template.json` naming that template and
`training_config.yaml`. The weights' header records the run's id (core/ownership.py). The folder appears
complete or not at all and never replaces another (`name_v2`, `name_v3`...) but the run's own: a resumed
run replaces the partial adapter it saved when it was stopped.

Reading one back (`check_adapter_folder`, `trained_base`, `base_mismatches`) works on any PEFT folder
and reads headers only: a damaged file or a base model that differs is told before peft loads anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..core.atomic import rewrite_folder, write_new_folder
from ..core.errors import UserError
from ..core.naming import free_folder_path
from ..core.ownership import ADAPTER_WEIGHTS, RUN_ID_KEY
from ..kohya.read import safetensors_header
from .templates import Template

TEMPLATE_FILE = "template.json"
TRAINING_CONFIG_FILE = "training_config.yaml"
ADAPTER_CONFIG = "adapter_config.json"


def save_adapter(model, tokenizer, template: Template, settings: dict[str, Any], folder: Path, name: str,
                 run_id: str) -> Path:
    """Write the adapter folder under the first free version of `name` in `folder`, or over the folder this run
    saved before it was stopped and resumed; return its path."""

    def write(staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        record_run(staging / ADAPTER_WEIGHTS, run_id)
        tokenizer.save_pretrained(str(staging))
        (staging / TEMPLATE_FILE).write_text(json.dumps({"name": template.name, "chat_template": template.source},
                                                        indent=2), encoding="utf-8")
        (staging / TRAINING_CONFIG_FILE).write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")

    path = free_folder_path(folder, name, run_id=run_id)
    return (rewrite_folder if path.exists() else write_new_folder)(path, write)


def record_run(weights: Path, run_id: str) -> None:
    """Add the run's id to the header of the adapter's weights (PEFT writes `format: pt` only)."""
    with safe_open(str(weights), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    save_file(load_file(str(weights)), str(weights), metadata={**metadata, RUN_ID_KEY: run_id})


def _read_mapping(path: Path, parse) -> dict[str, Any]:
    try:
        value = parse(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"{path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}): the adapter "
                        "folder cannot be read. Copy it again or train it again.") from exc
    if not isinstance(value, dict):
        raise UserError(f"{path} is damaged: it should hold a mapping of settings, not {type(value).__name__}.")
    return value


def read_training_config(adapter: Path) -> dict[str, Any]:
    """The settings an adapter was trained with ({} for a PEFT folder from elsewhere)."""
    path = Path(adapter) / TRAINING_CONFIG_FILE
    return _read_mapping(path, lambda text: yaml.safe_load(text) or {}) if path.is_file() else {}


def read_adapter_config(adapter: Path) -> dict[str, Any]:
    """The folder's adapter_config.json; UserError when the folder is not a PEFT adapter folder."""
    adapter = Path(adapter)
    if not adapter.is_dir():
        if not adapter.exists():
            raise UserError(f"Adapter folder not found: {adapter}")
        if (adapter.parent / ADAPTER_CONFIG).is_file():
            raise UserError(f"{adapter} is a file of the adapter folder {adapter.parent}: give that folder.")
        raise UserError(f"{adapter} is a file, not a PEFT adapter folder (a folder with {ADAPTER_CONFIG}, as "
                        "`lora_train llm` saves it); image LoRA files go to merge, bake or the WebUI.")
    path = adapter / ADAPTER_CONFIG
    if not path.is_file():
        raise UserError(f"{adapter} is not a PEFT adapter folder (no {ADAPTER_CONFIG}). Give a folder saved by "
                        "`lora_train llm` or peft.")
    return _read_mapping(path, json.loads)


def check_adapter_folder(adapter: Path) -> Path:
    """The folder, once its config and its weights' header read (a truncated weights file is named here,
    before peft loads it)."""
    adapter = Path(adapter)
    read_adapter_config(adapter)
    if (adapter / ADAPTER_WEIGHTS).is_file() or not (adapter / "adapter_model.bin").is_file():
        safetensors_header(adapter / ADAPTER_WEIGHTS, "adapter weights file")
    return adapter


def trained_base(adapter: Path) -> str | None:
    """The base model the adapter records: our training config's, else peft's base_model_name_or_path."""
    recorded = read_training_config(adapter).get("base_model") or \
        read_adapter_config(adapter).get("base_model_name_or_path")
    return str(recorded) if recorded else None


def same_model(first: str, second: str) -> bool:
    """Whether two base-model names are one model: the same resolved path, or the same hub id."""
    def key(name: str) -> str:
        path = Path(name).expanduser()
        return str(path.resolve()) if path.exists() else name
    return key(first) == key(second)


def base_mismatches(adapters: list[Path], base: str) -> list[str]:
    """A line for each adapter recorded as trained on another base model than `base`."""
    notes = []
    for adapter in adapters:
        trained_on = trained_base(adapter)
        if trained_on and not same_model(trained_on, base):
            notes.append(f"{Path(adapter).name} was trained on {trained_on}, not on {base}.")
    return notes
