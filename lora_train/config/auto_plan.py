"""The auto preset's plan for a set of config values: the family read from the base model torch-free, the
proposals (`auto_preset`) and the dataset doctor's findings on the dataset as the proposals would train it.
`lora_train plan` prints it (`plan_cli`); the image tab's Auto preset fills the form with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.base_family import recognised_family
from ..core.errors import UserError
from ..data.doctor import Finding, examine_dataset
from ..data.plan import DataSettings, plan_dataset
from ..families import family_or_default
from ..families.interface import Family
from .auto_preset import DatasetFacts, Proposal, has_rules, propose
from .load import build_config


@dataclass(frozen=True)
class Plan:
    proposals: list[Proposal]
    findings: list[Finding]
    notes: list[str]  # what had to be assumed


def make_plan(user: dict[str, Any], source: str, free_memory: int | float | None) -> Plan:
    """The plan for the config keys `user` (from `source`, for messages); the keys set there are kept."""
    config = build_config(user, source)
    family, note = _planned_family(Path(config.base_model))
    if not has_rules(family):
        offered = ", ".join(family.presets)
        raise UserError(f"The auto preset has no sourced rules for {family.names.title} yet"
                        f"{f'; start from one of its presets ({offered})' if offered else ''} (docs/plan.md).")
    first = plan_dataset(DataSettings.from_values(vars(config)))
    root_name = Path(config.train_data_dir).resolve().name if config.train_data_dir else ""
    free = None if free_memory is None else int(free_memory)
    proposals = propose(DatasetFacts.of(first, root_name), family, free, user)
    merged = build_config({**{p.key: p.value for p in proposals}, **user}, source)
    settings = DataSettings.from_values(vars(merged))
    findings = examine_dataset(plan_dataset(settings), settings)
    return Plan(proposals, findings, [note] if note else [])


def _planned_family(path: Path) -> tuple[Family, str]:
    """The family of a base model read torch-free, and a note when it had to be assumed."""
    found = recognised_family(path)
    if found is not None and not found.trained:
        raise UserError(f"base_model {path} is {found.title}, which lora_train does not train.")
    if found is None:
        default = family_or_default(None)
        return default, f"the family of {path.name} cannot be read without loading it: {default.names.title} assumed"
    return found, ""
