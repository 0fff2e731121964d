"""Run the image trainer without importing optional packages it does not use.

diffusers (its quantizers) and peft (its LoRA layer dispatch) import bitsandbytes as soon as
it is installed, which costs seconds at every start although only the 8-bit optimizer needs
it. Inside `without_optional_packages()` such packages look absent (an entry of None in
sys.modules is how Python marks a module that cannot be imported), so the libraries skip
them; `import_optional` lifts the mark for the code that does need one. The libraries then
treat them as absent, which is right: the image trainer never asks diffusers or peft to quantize.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

OPTIONAL = ("bitsandbytes",)


@contextlib.contextmanager
def without_optional_packages(names: tuple[str, ...] = OPTIONAL) -> Iterator[None]:
    """Hide `names` (those not imported yet) from imports made inside the block, unless `import_optional`
    asks for them."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def import_optional(name: str) -> ModuleType:
    """Import `name` even inside `without_optional_packages()`."""
    if name in sys.modules and sys.modules[name] is None:
        del sys.modules[name]
    return importlib.import_module(name)
