"""What the worker venv gets: the requirements file's lines, the host's torch pins, and the digest that says
whether an installed venv is still current. Standard library only (`install.py` runs it with the WebUI's
interpreter)."""

from __future__ import annotations

import hashlib
import os
import re
import site
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

STAMP_FORMAT = 1
HOST_PACKAGES_PINNED = ("torch", "torchvision", "torchaudio")
NO_DEPS_MARK = "# no-deps"


def host_site_dirs() -> list[str]:
    """The running (host) interpreter's site-packages folders, in import order."""
    dirs = site.getsitepackages() + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    seen: list[str] = []
    for folder in dirs:
        if os.path.isdir(folder) and folder not in seen:
            seen.append(folder)
    return seen


def host_pins() -> list[str]:
    """`torch==X.Y.Z` (and torchvision / torchaudio when present) for the host's versions, no local label."""
    pins = []
    for name in HOST_PACKAGES_PINNED:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")
    return pins


def read_requirements(path: Path) -> tuple[list[str], list[str]]:
    """(normal lines, no-deps lines) of a requirements file; `-r other.txt` is made absolute."""
    normal, no_deps = [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = re.match(r"^(-r|--requirement)\s+(.+)$", line)
        if include:
            normal.append(f"-r {(path.parent / include.group(2).strip()).resolve()}")
        elif line.endswith(NO_DEPS_MARK):
            no_deps.append(line[: -len(NO_DEPS_MARK)].strip())
        else:
            normal.append(line.split(" #")[0].strip())
    return normal, no_deps


def _requirement_files(path: Path) -> list[Path]:
    files = [path]
    for line in read_requirements(path)[0]:
        if line.startswith("-r "):
            files += _requirement_files(Path(line[3:]))
    return files


def install_digest(requirements: Path) -> str:
    """Changes when anything that decides the install changes: requirements, host torch, interpreter."""
    digest = hashlib.sha256(f"{STAMP_FORMAT}\n{sys.version}\n{sys.executable}\n".encode())
    for line in host_pins() + host_site_dirs():
        digest.update(line.encode() + b"\n")
    for file in _requirement_files(requirements):
        digest.update(file.read_bytes())
    return digest.hexdigest()
