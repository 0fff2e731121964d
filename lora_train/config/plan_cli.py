"""`lora_train plan --config x.yaml`: the `auto` preset for a config, printed as a YAML config with a reason
per proposed key, then the dataset doctor's findings (as comments, so the output is a config to train with).

The family is read from the base model's files torch-free (a .safetensors header, a diffusers folder's
model_index.json); the free GPU memory from `--free-memory` or, where CUDA is present, torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import UserError
from ..core.header_table import header_table
from ..data.doctor import Finding, examine_dataset
from ..data.plan import DataSettings, plan_dataset
from ..families import family_or_default
from ..families.interface import Family
from ..families.recognise import checkpoint_family, folder_family
from .auto_preset import GIB, DatasetFacts, Proposal, propose
from .load import add_override_option, build_config, parse_overrides, read_yaml


def add_plan_parser(sub) -> None:
    parser = sub.add_parser("plan", help="propose settings from the dataset, the model and the GPU (the auto preset)",
                            description="Print the config with the auto preset's proposals (one reason each; keys "
                                        "the config sets win), then the dataset doctor's findings. Rules and their "
                                        "sources: docs/plan.md.")
    parser.add_argument("--config", "-c", required=True, help="the YAML config (base_model and train_data_dir)")
    add_override_option(parser)
    parser.add_argument("--free-memory", type=float, metavar="GB",
                        help="free GPU memory to plan for, in GB (default: measured where CUDA is present)")


def run_plan(args) -> int:
    free = args.free_memory * GIB if args.free_memory is not None else cuda_free_memory()
    print(plan_text(args.config, parse_overrides(args.overrides), free), end="")
    return 0


def plan_text(config_path: str | os.PathLike, overrides: dict[str, Any], free_memory: int | float | None) -> str:
    """The plan as YAML text; a UserError naming the file or key for bad input."""
    user = {**read_yaml(config_path), **overrides}
    if user.get("task_type") == "text-generation":
        raise UserError(f"{config_path} is a text-generation config: plan proposes image LoRA settings only.")
    config = build_config(user, str(config_path))
    family, note = base_model_family(Path(config.base_model))
    first = plan_dataset(DataSettings.from_values(vars(config)))
    root_name = Path(config.train_data_dir).resolve().name if config.train_data_dir else ""
    free = None if free_memory is None else int(free_memory)
    proposals = propose(DatasetFacts.of(first, root_name), family, free, user)
    merged = build_config({**{p.key: p.value for p in proposals}, **user}, str(config_path))
    settings = DataSettings.from_values(vars(merged))
    findings = examine_dataset(plan_dataset(settings), settings)
    return format_plan(config_path, user, proposals, findings, [note] if note else [])


def base_model_family(path: Path) -> tuple[Family, str]:
    """The family of a base model read torch-free, and a note when it had to be assumed."""
    found = None
    if path.is_dir() and (path / "model_index.json").is_file():
        found = folder_family(_json(path / "model_index.json").get("_class_name", ""),
                              lambda file: _json(path / file))
    elif path.suffix.lower() == ".safetensors":
        header = header_table(path)
        found = checkpoint_family(key for key in header or {} if key != "__metadata__")
    if found is not None and not found.trained:
        raise UserError(f"base_model {path} is {found.title}, which lora_train does not train.")
    if found is None:
        default = family_or_default(None)
        return default, f"the family of {path.name} cannot be read without loading it: {default.names.title} assumed"
    return found, ""


def cuda_free_memory() -> int | None:
    """Free memory of the first CUDA GPU in bytes; None without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None


def format_plan(config_path, user: dict[str, Any], proposals: list[Proposal], findings: list[Finding],
                notes: list[str]) -> str:
    lines = [f"# lora_train plan for {config_path}: the auto preset (rules and sources: docs/plan.md).",
             "# Keys set in the config (or with --set) are kept as they are; edit any value, then train with it.",
             *(f"# Note: {note}" for note in notes), "", "# Set in the config:",
             *(_yaml(key, value) for key, value in user.items()),
             "", "# Proposed:"]
    lines += [f"{_yaml(p.key, p.value)}  # {p.reason}" for p in proposals]
    lines += ["", f"# Dataset doctor: {len(findings) or 'no'} finding{'' if len(findings) == 1 else 's'}"]
    lines += [f"# - {finding.message}" for finding in findings]
    return "\n".join(lines) + "\n"


def _yaml(key: str, value: Any) -> str:
    """One `key: value` line (a list or mapping in JSON's flow form, which YAML reads)."""
    if isinstance(value, (list, dict)):
        return f"{key}: {json.dumps(value, ensure_ascii=False)}"
    return yaml.safe_dump({key: value}, allow_unicode=True, width=10 ** 6).strip()


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
