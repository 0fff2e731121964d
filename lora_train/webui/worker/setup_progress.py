"""The worker set-up's progress in words, read from its log: "step 2 of 3: installing the trainer's packages
(now: downloading diffusers 0.42.1)".

The set-up (`environment`) writes its steps to the log as `lora_train: step K of N: what` lines, and pip's
output below them indented, as it comes. pip's lines stay in the log only: some read as errors when they
are not ("Can't uninstall 'PyYAML'. No files were found to uninstall." is pip declining to touch the
WebUI's own copy). What the tab shows is the step, and the package pip is fetching or installing now.

Standard library only: `install.py` runs the set-up with the WebUI's interpreter.
"""

from __future__ import annotations

import re
from pathlib import Path

PREFIX = "lora_train: "
STEP = re.compile(r"^lora_train: step (\d+) of (\d+): (.+)$")
PACKAGES_SHOWN = 3
_PIP_ACTIVITY = (  # (pip's line, what it means), the first match wins
    (re.compile(r"^Collecting ([A-Za-z0-9._-]+)"), "looking up {}"),
    (re.compile(r"^Downloading ([A-Za-z0-9._]+?)-(\d[^-]*)-.*\.whl"), "downloading {} {}"),
    (re.compile(r"^Downloading ([A-Za-z0-9._]+?)-(\d[^-]*?)\.tar\.gz"), "downloading {} {}"),
    (re.compile(r"^Building wheels? for ([A-Za-z0-9._-]+)"), "building {}"),
    (re.compile(r"^Installing collected packages: (.+)$"), "installing {}"),
    (re.compile(r"^Successfully installed"), "installed"),
)


def step_line(number: int, count: int, what: str) -> str:
    """The log line that starts step `number` of `count`."""
    return f"{PREFIX}step {number} of {count}: {what}"


def _packages(listed: str) -> str:
    names = [name.strip() for name in listed.split(",") if name.strip()]
    more = len(names) - PACKAGES_SHOWN
    return ", ".join(names[:PACKAGES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _activity(line: str) -> str | None:
    """What one of pip's lines says it is doing, in words; None for the rest."""
    for pattern, words in _PIP_ACTIVITY:
        found = pattern.match(line.strip())
        if found:
            groups = found.groups()
            if words == "installing {}":
                groups = (_packages(groups[0]),)
            return words.format(*groups)
    return None


def progress_text(lines: list[str]) -> str:
    """The latest step of the log's `lines` and, within it, what pip is doing now; "starting" before the
    first step, and the set-up's own last line (its result) after the last."""
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index].strip()
        step = STEP.match(line)
        if step:
            now = next((activity for activity in map(_activity, reversed(lines[index + 1:])) if activity), None)
            text = f"step {step.group(1)} of {step.group(2)}: {step.group(3)}"
            return f"{text} (now: {now})" if now else text
        if line.startswith(PREFIX):
            return line.removeprefix(PREFIX)
    return "starting"


def log_progress(log_file: Path) -> str:
    """`progress_text` of the set-up's log file ("starting" until it exists)."""
    try:
        return progress_text(log_file.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return "starting"
