"""The extension's job runners, one per kind of job, kept across page reloads. They form one group: a
job of any kind is refused while another runs, because each moves the WebUI's model out of VRAM and
back when it ends."""

from __future__ import annotations

from .runner import JobRunner

EXCLUSIVE: list[JobRunner] = []
TRAINING = JobRunner("training", EXCLUSIVE)
CAPTIONING = JobRunner("captioning", EXCLUSIVE)
LLM_TRAINING = JobRunner("LLM training", EXCLUSIVE)
