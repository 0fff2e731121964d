"""Wording shared by the data warnings: one message per kind of problem, naming the files."""

from __future__ import annotations

from typing import Sequence

_SHOWN = 8


def name_files(names: Sequence[str]) -> str:
    """'a.png, b.png and 3 more': every file named when there are few, the first ones otherwise."""
    shown = ", ".join(names[:_SHOWN])
    hidden = len(names) - _SHOWN
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def grouped(problems: dict[str, list[str]]) -> list[str]:
    """One warning per distinct problem: '<files>: <problem>'."""
    return [f"{name_files(names)}: {problem}" for problem, names in problems.items()]
