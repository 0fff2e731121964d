"""The model families, one plug-in each: `sd1.py`, `sd2.py`, `sdxl.py` (the UNet engine) and `flux.py` (Flux.1
dev / schnell and Chroma, the DiT engine) declare their `Family` rows (interface.py) in `FAMILIES`,
`untrained.py` the families that are recognised only to be refused by name.

`MODULES` lists the plug-ins in detection order (the first whose signature a file matches wins); a new
family is a module here and its name in `MODULES` (docs/architecture.md says what it must provide).
Everything in this package is torch-free, so the WebUI reads labels and sniffs files without torch;
what needs engine code, a family names with a `Ref`. `recognise.py` tells a file's family.
"""

from __future__ import annotations

import functools
import importlib

from .interface import Family, NotTrained

MODULES = ("untrained", "flux", "sd1", "sd2", "sdxl")
DEFAULT = "sd1"  # what a preset and the tools assume when nothing says which family


@functools.cache
def _table(modules: tuple[str, ...]) -> tuple[Family | NotTrained, ...]:
    rows = tuple(row for module in modules for row in importlib.import_module(f"{__name__}.{module}").FAMILIES)
    ids = [row.id for row in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"model family ids are not unique: {ids}")
    return rows


def all_families() -> tuple[Family | NotTrained, ...]:
    """Every row, trained or not, in detection order."""
    return _table(MODULES)


def trained_families(parts: type | None = None) -> tuple[Family, ...]:
    """The trained rows; with `parts` (UnetParts, DitParts) only those of that engine's kind."""
    return tuple(row for row in all_families() if isinstance(row, Family) and (parts is None
                                                                               or isinstance(row.parts, parts)))


def family(id: str) -> Family:
    """The trained family `id` (sd1 | sd2 | sdxl | flux-dev | flux-schnell | chroma); KeyError for any other."""
    found = next((row for row in trained_families() if row.id == id), None)
    if found is None:
        raise KeyError(f"no trained model family {id!r}; known: {', '.join(row.id for row in trained_families())}")
    return found


def family_or_default(id: str | None) -> Family:
    """The trained family `id`, or the default one (SD1) when nothing tells."""
    return family(id or DEFAULT)


def family_of_label(label: str | None) -> Family | None:
    """The family a tab / card label (SD1 / SD2 / SDXL) stands for, or None."""
    return next((row for row in trained_families() if row.names.label == label), None)


def labels() -> tuple[str, ...]:
    """The card's "sd version" values, one per label."""
    return tuple(dict.fromkeys(row.names.label for row in trained_families()))


def titles(last: str = "and", parts: type | None = None) -> str:
    """`SD 1.x, SD 2.x and SDXL`: the trained families (of one engine's `parts` kind), for messages."""
    names = [row.names.title for row in trained_families(parts)]
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]


def title_of(id: str | None) -> str:
    """The title of a trained family's id, `an unknown model family` for None or another id."""
    return next((row.names.title for row in trained_families() if row.id == id), "an unknown model family")
