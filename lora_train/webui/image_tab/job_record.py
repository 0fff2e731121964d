"""How a job that saved a LoRA ended, kept beside its `job.yaml`, so that after a WebUI restart the tab offers
the last LoRA it trained ("5. Use it", the prompt tag, Test now) and its form comes back with that job's values.

The runner's state lives in the WebUI's process only. When a job ends with a LoRA, `HostHooks` writes the
state's main facts into `<work folder>/<job>/job-end.json`; `last_ended` reads the newest record whose
LoRA is still there back into an ended `JobState`, with the job's settings from its `job.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ...core.atomic import replace_file
from ..worker.runner import JobState

RECORD = "job-end.json"
KEPT = ("name", "status", "step", "total", "epoch", "epochs", "losses", "eval_losses", "lora_path", "summary")


def save(state: JobState) -> str | None:
    """Record the ended job in its work folder; what to tell the user when that fails, else None."""
    try:
        replace_file(state.workspace / RECORD, json.dumps({key: getattr(state, key) for key in KEPT}).encode())
    except OSError as exc:
        return (f"Could not write {state.workspace / RECORD} ({exc.strerror or exc}): after a WebUI restart the "
                f"tab will not offer {state.name}.")
    return None


def last_ended(work_dir: Path) -> JobState | None:
    """The newest job recorded in `work_dir` whose LoRA file exists, as the runner held it when it ended."""
    for record in sorted(work_dir.glob(f"*/{RECORD}"), key=_written, reverse=True):
        try:
            facts = json.loads(record.read_text(encoding="utf-8"))
            settings = yaml.safe_load((record.parent / "job.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if not (isinstance(facts, dict) and isinstance(settings, dict) and isinstance(facts.get("name"), str) and
                isinstance(facts.get("lora_path"), str) and Path(facts["lora_path"]).is_file()):
            continue
        kept = {key: facts[key] for key in KEPT if key in facts}
        for key in ("losses", "eval_losses"):
            kept[key] = [tuple(point) for point in kept.get(key, [])]
        return JobState(workspace=record.parent, settings=settings, ended=True, **kept)
    return None


def _written(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # removed meanwhile: read as the oldest, and skipped
        return 0
