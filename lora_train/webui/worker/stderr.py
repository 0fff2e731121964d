"""What a worker process writes to stderr: all of it kept in the log, only a traceback shown on the console.

Every worker (training, captioning and LLM jobs; the LLM tab's model worker) reports through its stdout:
JSON events, or answers. Its stderr carries the libraries' own output (transformers' FutureWarnings,
notices) and, for a bug, a Python traceback. Each line goes to the log file; the tab's log tail gets the
same lines with a traceback folded into its last line. The WebUI's console, which is the user's, gets
the tracebacks only, prefixed with the worker's name: library noise stays out of it, as the workers'
`quiet_libraries` keeps most of it from being written at all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Callable, Iterable

TRACEBACK_START = "Traceback (most recent call last):"
CHAINED = ("During handling of the above exception, another exception occurred:",
           "The above exception was the direct cause of the following exception:")
FOLDED = " (the worker's traceback was printed to the console)"


class StderrReader:
    """Sorts one worker's stderr lines: `tail` gets what the tab shows, `log_file` every line, the console
    (stderr of the WebUI) the tracebacks."""

    def __init__(self, prefix: str, tail: Callable[[str], None], log_file: Path | None = None):
        self.prefix = prefix
        self.tail = tail
        self.log_file = log_file
        self.inside = False  # in a traceback
        self._log: IO[str] | None = None

    def read(self, lines: Iterable[str]) -> None:
        """Every line of a stream, until it ends."""
        try:
            for raw in lines:
                self.line(raw.rstrip("\n"))
        finally:
            self.close()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def line(self, line: str) -> None:
        """One line: to the console when part of a traceback, to the tail otherwise (a traceback as its last
        line; blank lines not at all); to the log file always."""
        self._write(line)
        if line.startswith(TRACEBACK_START) or line in CHAINED:
            self.inside = True
        elif self.inside and line and not line[:1].isspace():  # the exception's own line ends the traceback
            self.inside = False
            self._console(line)
            self.tail(line + FOLDED)
            return
        if self.inside:
            self._console(line)
        elif line.strip():
            self.tail(line)

    def _write(self, line: str) -> None:
        if self.log_file is None:
            return
        try:
            if self._log is None:
                self.log_file.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(self.log_file, "a", encoding="utf-8")
            self._log.write(line + "\n")
            self._log.flush()
        except OSError as exc:  # a full disk: the tail still shows the lines
            self.tail(f"(the rest is not in {self.log_file}: {exc.strerror or exc})")
            self.log_file = None

    def _console(self, line: str) -> None:
        print(f"{self.prefix} {line}", file=sys.stderr, flush=True)
