"""The saved text LoRA: a standard PEFT folder plus the template and the training settings.

`output_dir/<output_name>/` holds adapter_model.safetensors and adapter_config.json (loadable with
`PeftModel.from_pretrained`), the tokenizer with the chat template the model was trained on (so
inference formats prompts the same way), `template.json` naming that template and
`training_config.yaml`. The weights' header records the run's id (core/ownership.py). The folder appears
complete or not at all and never replaces another (`name_v2`, `name_v3`...) but the run's own: a resumed
run replaces the partial adapter it saved when it was stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..core.atomic import rewrite_folder, write_new_folder
from ..core.naming import free_folder_path
from ..core.ownership import ADAPTER_WEIGHTS, RUN_ID_KEY
from .templates import Template

TEMPLATE_FILE = "template.json"
TRAINING_CONFIG_FILE = "training_config.yaml"


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


def read_training_config(adapter: Path) -> dict[str, Any]:
    """The settings an adapter was trained with ({} for a PEFT folder from elsewhere)."""
    path = Path(adapter) / TRAINING_CONFIG_FILE
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.is_file() else {}
