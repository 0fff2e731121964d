"""Whose run a checkpoint belongs to: the run's id, its output name, its base model and when it started.

A run gets a new id when it starts; each checkpoint records this record (with the loss curve so far,
resume_state.py). Resuming checks that the checkpoint is this job's, the same output name on the same
base model, and says which job it is otherwise, so a job never continues from another's state. The
resumed run carries the id and start time on: the files it saves record the id (core/ownership.py), so
it replaces its own partial save and finishes under the name it started with.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.ownership import new_run_id
from .reporting import Say


def model_identity(base_model: str | Path) -> str:
    """The base model as a checkpoint records it: its full path, links followed."""
    return str(Path(base_model).expanduser().resolve())


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    output_name: str
    base_model: str  # model_identity of the base model
    started_at: float  # unix time

    @classmethod
    def start(cls, output_name: str, base_model: str | Path) -> RunRecord:
        return cls(new_run_id(), output_name, model_identity(base_model), time.time())

    def continued(self, saved: Mapping[str, Any] | None, origin: Path, say: Say) -> RunRecord:
        """This run as the continuation of the one a checkpoint recorded (`saved`): the same job, or a UserError
        naming both; then with the recorded id and start time. A checkpoint of an earlier version records no
        job: it is resumed as it is, with a warning."""
        if not saved:
            say(f"{origin} was saved by an earlier version, which did not record whose job it is: it is resumed "
                "without checking its output name and base model.", "warning")
            return self
        name, model = saved.get("output_name"), saved.get("base_model")
        if (name, model) != (self.output_name, self.base_model):
            raise UserError(f"Checkpoint {origin} belongs to another job: it was saved by {name!r} training on "
                            f"{model}, and this job is {self.output_name!r} on {self.base_model}. Resume one of "
                            "this job's checkpoints (resume_from_checkpoint: latest finds them), or set output_name "
                            "and base_model to that job's to continue it.")
        return replace(self, run_id=str(saved["run_id"]), started_at=float(saved["started_at"]))
