"""A stop request that the training loop polls: a signal (Ctrl+C, SIGTERM) or a stop file.

The stop file works on every OS, which is how the WebUI tab asks its worker to stop. On a
stop the loop saves what it has trained so far and ends with `done` (interrupted).
"""

from __future__ import annotations

import signal
from pathlib import Path


class StopRequest:
    def __init__(self, stop_file: str | Path | None = None):
        self.stop_file = Path(stop_file) if stop_file else None
        self.signalled = False

    def install_signal_handlers(self) -> None:
        """Turn SIGINT/SIGTERM into a stop request (main thread only)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.signalled:  # a second Ctrl+C stops at once
            raise KeyboardInterrupt
        self.signalled = True

    def __bool__(self) -> bool:
        return self.signalled or (self.stop_file is not None and self.stop_file.exists())
