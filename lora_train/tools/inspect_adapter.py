"""`inspect` on a PEFT adapter (a text / LLM LoRA) and on folders: what they hold, without peft.

A PEFT adapter folder is read from its `adapter_config.json` (kind, base model, rank, alpha,
target modules, DoRA), our `training_config.yaml` and `template.json` when present, and its
weights' header (the adapted layers and their ranks). A lone `adapter_model.safetensors` is read
from the folder it is in, or from its keys alone. Any other folder is described (a diffusers or
transformers model folder, a folder of LoRA files) so the message says what to give instead.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..kohya.read import safetensors_header
from ..text.adapter import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, TEMPLATE_FILE, read_adapter_config,
                            read_training_config, trained_base)

PEFT_FORMAT = "PEFT adapter"
_TASKS = {"CAUSAL_LM": "text generation (a causal language model)", "SEQ_2_SEQ_LM": "sequence to sequence",
          "SEQ_CLS": "sequence classification", "TOKEN_CLS": "token classification",
          "FEATURE_EXTRACTION": "feature extraction"}
_TRAINING_KEYS = ("template", "epochs", "max_steps", "learning_rate", "cutoff_len", "lora_dropout")


def _layers(shapes: dict[str, tuple[int, ...]]) -> tuple[Counter, list[int]]:
    """Adapted layers per module name (`q_proj`: 2) and the ranks, from the lora_A keys."""
    down = {key: shape for key, shape in shapes.items() if ".lora_A." in key or key.endswith(".lora_A.weight")}
    names = Counter(key.split(".lora_A.")[0].rsplit(".", 1)[-1] for key in down)
    return names, sorted({shape[0] for shape in down.values() if shape})


def _template_name(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / TEMPLATE_FILE).read_text(encoding="utf-8")).get("name"))
    except (OSError, ValueError, AttributeError):
        return None


def inspect_adapter(path: str | Path) -> dict[str, Any]:
    """The summary of a PEFT adapter folder, or of its weights file; UserError naming what else it is."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = path if path.is_file() else folder / ADAPTER_WEIGHTS
    if path.is_dir() and not (path / ADAPTER_CONFIG).is_file():
        raise UserError(describe_folder(path))
    config = read_adapter_config(folder) if (folder / ADAPTER_CONFIG).is_file() else {}
    shapes, _ = safetensors_header(weights, "adapter weights file")
    per_module, ranks = _layers(shapes)
    targets = config.get("target_modules") or sorted(per_module)
    training = read_training_config(folder) if config else {}
    return {
        "file": str(path),
        "format": PEFT_FORMAT,
        "adapter_type": config.get("peft_type", "LORA (no adapter_config.json beside the weights)"),
        "task": _TASKS.get(config.get("task_type"), config.get("task_type") or "unknown"),
        "base_model": (trained_base(folder) if config else None) or "unknown",
        "ranks": ranks,
        "alpha": config.get("lora_alpha"),
        "target_modules": targets if isinstance(targets, list) else [str(targets)],
        "layers": dict(sorted(per_module.items())),
        "dora": bool(config.get("use_dora")),
        "template": _template_name(folder) if config else None,
        "training": {key: training[key] for key in _TRAINING_KEYS if key in training},
    }


def format_adapter_report(report: dict[str, Any]) -> str:
    """The adapter report as aligned text lines."""
    layers = ", ".join(f"{name} {count}" for name, count in report["layers"].items())
    lines = [("File", report["file"]), ("Format", f"{report['format']} ({report['adapter_type']})"),
             ("Task", report["task"]), ("Base model", report["base_model"]),
             ("Rank (r)", ", ".join(map(str, report["ranks"])) or "none"),
             ("Alpha", "unknown" if report["alpha"] is None else f"{report['alpha']:g}"),
             ("Targets", ", ".join(report["target_modules"])),
             ("Layers", f"{sum(report['layers'].values())} ({layers})"),
             ("DoRA", "yes" if report["dora"] else "no"),
             ("Template", report["template"] or "none recorded")]
    lines += [(key, str(value)) for key, value in report["training"].items()]
    text = [f"{label + ':':<15}{value}" for label, value in lines]
    return "\n".join(text + ["Use it with `lora_train llm generate` / `llm stack` / `llm merge` (not an image "
                             "LoRA: the WebUI's <lora:...> does not load it)."])


def describe_folder(folder: Path) -> str:
    """What a folder that is not a PEFT adapter holds, and what `inspect` takes instead."""
    loras = sorted(item.name for item in folder.glob("*.safetensors"))
    if (folder / "model_index.json").is_file():
        what = "a diffusers model folder (model_index.json), not a LoRA"
    elif (folder / "config.json").is_file():
        what = "a model folder (config.json), not a LoRA or an adapter"
    elif loras:
        shown = ", ".join(loras[:3]) + (f" and {len(loras) - 3} more" if len(loras) > 3 else "")
        what = f"a folder of {len(loras)} .safetensors file(s) ({shown}): give one of them"
    else:
        what = "a folder with no LoRA file and no adapter_config.json"
    return f"{folder} is {what}. inspect takes a LoRA file (.safetensors) or a PEFT adapter folder."
