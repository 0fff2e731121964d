"""What one page shows of a job, kept in the page's memory (`compat.page_memory`).

The periodic updates send a job's parts again only when the job changed since the page last got them,
and a note that spoke of a job (started, refused because it runs, stopping) is replaced, once that job
has ended, by how it ended: a note always says what is true now.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from ..worker.runner import JobRunner, JobState
from . import markup

ENDED_LEVELS = {"done": "success", "interrupted": "info", "failed": "error"}


def job_changed(page: dict[str, Any], state: JobState | None) -> bool:
    """Whether the page has not seen this version of the job yet (from now on it has)."""
    key = [state.number, state.version] if state else None
    if state is None or page.get("job") == key:
        return False
    page["job"] = key
    return True


def ended_note(page: dict[str, Any], state: JobState | None) -> str | None:
    """How the job ended, for the note that spoke of it (once); None while it runs or when the note says
    something else."""
    if state is None or not state.ended or page.get("note_job") != state.number:
        return None
    page["note_job"] = None
    what = f"{state.name} ended" if state.status != "failed" else f"{state.name} failed"
    text = state.summary if state.status != "failed" else "the messages below say why."
    return markup.message(f"{what}: {text or state.status}", ENDED_LEVELS[state.status])


@contextlib.contextmanager
def note_about_job(page: dict[str, Any], runner: JobRunner) -> Iterator[None]:
    """Around an action whose note speaks of a job, the one it started or the one running (a refusal, a
    stop), so that the note is replaced when that job ends; a note about anything else stays."""
    before = runner.snapshot()
    try:
        yield
    finally:
        after = runner.snapshot()
        if after is not None and (not after.ended or before is None or after.number != before.number):
            page["note_job"] = after.number
