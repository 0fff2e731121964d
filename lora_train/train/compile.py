"""torch.compile of the UNet's training forward (`compile_unet`), falling back to eager where it cannot compile.

Compilation happens on the first call (and again for each new bucket shape), before anything
runs, so when it fails (no C++ compiler or Triton, an operation the compiler does not handle)
the same call runs eagerly, the run continues uncompiled and a warning says why. Out of
memory is not a compile failure and is raised as usual.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class CompiledWithFallback:
    """Calls the compiled module until compiling fails once, then the module itself."""

    def __init__(self, module: torch.nn.Module, warn: Callable[[str], None]):
        self.module, self.warn = module, warn
        self.compiled: Callable[..., Any] | None = torch.compile(module)

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                self.warn(f"compile_unet: torch.compile could not compile the UNet ({type(exc).__name__}: "
                          f"{reason}); training continues without it.")
                self.compiled = None
        return self.module(*args, **kwargs)
