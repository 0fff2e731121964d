"""Where a captioning model comes from: a local file or folder, or a hub repo id downloaded once.

A repo id (`owner/name`) is looked up in the captioners folder (`<captioners>/owner--name`); when
the files are not there yet they are downloaded with huggingface_hub, once, and reused after; the
download's progress goes out as `log` events. Offline or failing downloads end in one message naming the
repo, the files needed and the folder to put them in, so the user can copy them by hand.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

from lora_train.core.errors import UserError
from lora_train.core.events import EventSink, make_event
from lora_train.core.units import byte_size

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelFiles:
    """What a method needs from a repo: files that must be there, and patterns of what to download."""

    required: tuple[str, ...]  # each entry may list alternatives: "a.safetensors|a.bin"
    download: tuple[str, ...]
    fallback: tuple[str, ...] = ()  # downloaded only when `download` left something required missing

    def missing(self, folder: Path) -> list[str]:
        """The required entries `folder` lacks, in words (`a.safetensors or a.bin`)."""
        return [need.replace("|", " or ") for need in self.required
                if not any((folder / alt).is_file() for alt in need.split("|"))]

    def described(self) -> str:
        return ", ".join(need.replace("|", " or ") for need in self.required)


def is_repo_id(spec: str) -> bool:
    """`owner/name` as the Hugging Face hub spells repo ids (a local path may look the same: check it first)."""
    return bool(_REPO_ID.match(spec))


def resolve_model(spec: str, files: ModelFiles, captioners_dir: Path, emit: EventSink) -> Path:
    """The local path of the model `spec` names (downloading a repo id once)."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if not is_repo_id(spec):
        raise UserError(f"Model {spec!r} not found: give a model file or folder that exists, or a Hugging Face "
                        f"repo id (owner/name).")
    target = captioners_dir / spec.replace("/", "--")
    if target.is_dir() and not files.missing(target):
        return target
    emit(make_event("log", level="info", message=f"Downloading {spec} into {target} (once)"))
    try:
        from huggingface_hub import snapshot_download

        progress = download_progress(spec, emit)
        snapshot_download(spec, local_dir=str(target), allow_patterns=list(files.download), tqdm_class=progress)
        if files.fallback and files.missing(target):  # e.g. an older repo with .bin weights only
            snapshot_download(spec, local_dir=str(target), allow_patterns=list(files.fallback), tqdm_class=progress)
    except Exception as exc:  # offline, unknown repo, gated repo, disk: all end in the same advice
        raise _download_error(spec, files, target, exc) from None
    missing = files.missing(target)
    if missing:
        from huggingface_hub import constants

        offline = " (offline: nothing was downloaded)" if constants.HF_HUB_OFFLINE else ""
        raise UserError(f"{target}, the folder of {spec}, lacks {', '.join(missing)}{offline}. Copy them from "
                        f"https://huggingface.co/{spec} into it; if the repo has none, it is not a model for this "
                        "method: choose another model.")
    return target


def download_progress(spec: str, emit: EventSink, every_s: float = 2.0):
    """A tqdm class for huggingface_hub whose byte counts become `log` events (at most one per `every_s`)."""
    from tqdm import tqdm

    last = [0.0]

    class EventBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "file": io.StringIO()})  # shown as events, not drawn

        def update(self, n=1):
            shown = super().update(n)
            now = time.monotonic()
            if self.unit == "B" and self.total and (now - last[0] >= every_s or self.n >= self.total):
                last[0] = now
                emit(make_event("log", level="info", message=f"Downloading {spec}: {byte_size(self.n)} of "
                                                            f"{byte_size(self.total)}"))
            return shown

    return EventBar


def _download_error(spec: str, files: ModelFiles, target: Path, exc: Exception) -> UserError:
    reason = str(exc).strip().splitlines()[0].split(". ")[0][:200] if str(exc).strip() else "no detail"
    required = {alternative for need in files.required for alternative in need.split("|")}
    others = [pattern for pattern in files.download if pattern not in required]
    also = f" (with its other {', '.join(others)} files)" if others else ""
    return UserError(f"Could not download the model {spec} from the Hugging Face hub ({type(exc).__name__}: "
                     f"{reason}). Download {files.described()}{also} from https://huggingface.co/{spec} yourself "
                     f"and put them in {target}, or give --model a local folder.")
