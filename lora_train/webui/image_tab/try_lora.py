""""Test now": the same prompt and seed rendered without and then with the new LoRA by the host, in a thread,
with the host's sampling progress to show and a stop that interrupts the render under way."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ...core.errors import UserError
from ..hosts.host import Host
from ..kit import markup

DEFAULT_STEPS = 10  # enough to see what a LoRA does; 20+ on a CPU WebUI takes minutes
MAX_STEPS = 150


@dataclass(frozen=True)
class TryRequest:
    prompt: str
    tag: str  # <lora:name:weight>
    seed: int
    steps: int
    size: int  # width and height in pixels


class TryRender:
    """One "Test now" run; started on creation."""

    def __init__(self, host: Host, request: TryRequest):
        self.host = host
        self.request = request
        self.images: list[tuple[Any, str]] = []
        self.error: str | None = None
        self.stopped = False
        self._done = threading.Event()
        threading.Thread(target=self._run, name="lora_train test render", daemon=True).start()

    def _run(self) -> None:
        request = self.request
        passes = ((request.prompt, "without the LoRA"), (f"{request.prompt} {request.tag}", f"with {request.tag}"))
        try:
            for prompt, caption in passes:
                if self.stopped:
                    break
                image = self.host.render(prompt, "", request.seed, request.steps, request.size, request.size)
                if not self.stopped:  # an interrupted render is unfinished noise
                    self.images.append((image, caption))
        except Exception as exc:
            self.error = markup.problem(exc)
        finally:
            self._done.set()

    def stop(self) -> None:
        self.stopped = True
        self.host.stop_render()

    def wait(self, seconds: float) -> bool:
        """True once the run has ended (waits up to `seconds` for it)."""
        return self._done.wait(seconds)

    def progress(self) -> str:
        request, passes = self.request, len(self.images) + 1
        where = self.host.render_progress()
        steps = f", step {where[0]}/{where[1]}" if where else ""
        return markup.message(f"Rendering {min(passes, 2)}/2 at {request.size}×{request.size}, {request.steps} steps"
                              f"{steps}...", "info")

    def outcome(self) -> str:
        if self.error:
            return markup.message(self.error, "error")
        if self.stopped:
            return markup.message(f"Test stopped; {len(self.images)} of 2 images rendered.", "warning")
        return markup.message(f"Rendered with the same seed at {self.request.size}×{self.request.size}, "
                              f"{self.request.steps} steps.", "success")


def try_request(prompt: str, tag: str, seed: Any, steps: Any, size: Any) -> TryRequest:
    """The request from the tab's fields, checked: steps 1..150, a size the WebUI takes (a multiple of 8)."""
    steps, size = int(steps or DEFAULT_STEPS), int(size)
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"Test steps must be 1 to {MAX_STEPS}, not {steps}.")
    if not 64 <= size <= 4096:
        raise UserError(f"Test size must be 64 to 4096 pixels, not {size}.")
    return TryRequest(prompt, tag, int(seed), steps, size - size % 8)
