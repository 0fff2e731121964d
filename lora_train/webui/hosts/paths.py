"""Paths typed into the tab: where they may point, and safe output names.

When the UI is reachable from a network without a password (the WebUI with `--listen` or
`--share` and no `--gradio-auth`; the standalone server on a non-loopback address), anyone who
can open the page could otherwise make the trainer read or write any file the process can.
Then every typed path must resolve (symlinks followed) inside one of the allowed roots: the
WebUI's own folders, the LoRA and work folders, and the dataset roots named in the settings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...core.errors import UserError

LOOPBACK_HOSTS = {None, "", "127.0.0.1", "localhost", "::1"}


def network_exposed(listen: bool, share: bool, server_name: str | None, has_auth: bool) -> bool:
    """True when the UI answers other machines and asks for no password."""
    return (listen or share or server_name not in LOOPBACK_HOSTS) and not has_auth


def split_roots(text: str) -> list[str]:
    """Dataset roots from a setting: one per line, or separated by the OS path separator or commas."""
    return [part.strip() for part in re.split(r"[\n,;" + re.escape(os.pathsep) + "]", text or "") if part.strip()]


@dataclass
class PathPolicy:
    """Resolves typed paths; when `confined`, refuses those outside `roots`."""

    confined: bool = False
    roots: list[Path] = field(default_factory=list)
    hint: str = "Add the folder as a dataset root in the settings."

    def __post_init__(self) -> None:
        self.roots = [Path(os.path.realpath(os.path.expanduser(str(root)))) for root in self.roots]

    def resolve(self, text: str, what: str) -> Path:
        """The absolute path for `text`, or a UserError naming `what` and the allowed folders."""
        text = (text or "").strip().strip('"')
        if not text:
            raise UserError(f"{what}: no path given.")
        path = Path(os.path.realpath(os.path.expanduser(text)))
        if self.confined and not any(path == root or root in path.parents for root in self.roots):
            allowed = ", ".join(str(root) for root in self.roots) or "(none configured)"
            raise UserError(f"{what}: {text} is outside the folders this server may use, because it is reachable "
                            f"from the network without a password. Allowed: {allowed}. {self.hint}")
        return path


def safe_name(text: str, fallback: str = "my_lora") -> str:
    """A file name from what the user typed: no folders, no `..`, only letters, digits, ` -_.`."""
    name = re.split(r"[\\/]", (text or "").strip())[-1]
    name = re.sub(r"[^\w \-.]", "_", name, flags=re.UNICODE)
    name = re.sub(r"\.{2,}", ".", name).strip(" .")
    return name[:120] or fallback
