"""The saved text LoRA: a standard PEFT folder plus the template and the training settings.

`output_dir/<output_name>/` holds adapter_model.safetensors and adapter_config.json (loadable with
`PeftModel.from_pretrained`), the tokenizer with the chat template the model was trained on (so
inference formats prompts the same way), `template.json` naming that template and
`training_config.yaml`. The folder appears complete or not at all and never replaces another
(`name_v2`, `name_v3`...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..core.atomic import write_new_folder
from ..core.naming import free_folder_path
from .templates import Template

TEMPLATE_FILE = "template.json"
TRAINING_CONFIG_FILE = "training_config.yaml"


def save_adapter(model, tokenizer, template: Template, settings: dict[str, Any], folder: Path, name: str) -> Path:
    """Write the adapter folder under the first free version of `name` in `folder`; return its path."""

    def write(staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        (staging / TEMPLATE_FILE).write_text(json.dumps({"name": template.name, "chat_template": template.source},
                                                        indent=2), encoding="utf-8")
        (staging / TRAINING_CONFIG_FILE).write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")

    return write_new_folder(free_folder_path(folder, name), write)


def read_training_config(adapter: Path) -> dict[str, Any]:
    """The settings an adapter was trained with ({} for a PEFT folder from elsewhere)."""
    path = Path(adapter) / TRAINING_CONFIG_FILE
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.is_file() else {}
