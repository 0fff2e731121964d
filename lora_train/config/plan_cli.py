"""`lora_train plan --config x.yaml`: the `auto` preset for a config, printed as a YAML config with a reason
per proposed key, then the dataset doctor's findings (as comments, so the output is a config to train with).

The plan itself is `auto_plan.make_plan`; the free GPU memory comes from `--free-memory` or, where CUDA is
present, torch.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from ..core.errors import UserError
from .auto_plan import Plan, make_plan
from .auto_preset import GIB
from .load import add_override_option, parse_overrides, read_yaml


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
    return format_plan(config_path, user, make_plan(user, str(config_path), free_memory))


def cuda_free_memory() -> int | None:
    """Free memory of the first CUDA GPU in bytes; None without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None


def format_plan(config_path, user: dict[str, Any], plan: Plan) -> str:
    proposals, findings, notes = plan.proposals, plan.findings, plan.notes
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
