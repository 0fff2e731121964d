"""Editing the captions of a folder by hand: one caption, or one tag across the folder, and tag counts.

Plain text work (no model, no torch), so the WebUI tab does it in its own process. Every caption
file that an edit changes is first copied into a backup folder named with the edit's time, as the
captioning run does (`writer.Backups`), so `writer.restore_backup` can undo any edit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lora_train.caption.writer import Backups
from lora_train.core.atomic import replace_file
from lora_train.core.errors import UserError
from lora_train.data.captions import read_caption_file
from lora_train.data.scan import list_images

BULK_ACTIONS = ("add", "remove", "replace")


@dataclass(frozen=True)
class CaptionedImage:
    image: Path
    name: str  # relative to the folder
    caption: str


@dataclass(frozen=True)
class EditResult:
    changed: list[str]
    backup_dir: Path | None


def read_captions(folder: Path, extension: str = ".txt") -> list[CaptionedImage]:
    """Every image of the folder (subfolders too) with its caption ("" when it has none)."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: give the folder of images.")
    items = []
    for image in list_images(folder, recursive=True):
        caption_file = image.with_suffix(extension)
        caption = read_caption_file(caption_file)[0] if caption_file.is_file() else ""
        items.append(CaptionedImage(image, image.relative_to(folder).as_posix(), caption))
    return items


def tag_counts(items: list[CaptionedImage]) -> list[tuple[str, int]]:
    """(tag, images using it), most used first, as written (the first spelling seen)."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for item in items:
        for tag in dict.fromkeys(_split(item.caption)):
            spelling.setdefault(tag.lower(), tag)
            counts[tag.lower()] += 1
    return [(spelling[key], count) for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def save_caption(folder: Path, name: str, caption: str, extension: str = ".txt",
                 when: datetime | None = None) -> EditResult:
    """Write one image's caption (the image named relative to `folder`), backing up the old one."""
    image = (folder / name).resolve()
    if folder.resolve() not in image.parents or not image.is_file():
        raise UserError(f"{name} is not an image in {folder}: choose one from the list.")
    return _apply(folder, {image.with_suffix(extension): " ".join(caption.split())}, when)


def bulk_edit(folder: Path, action: str, tag: str, replacement: str = "", extension: str = ".txt",
              when: datetime | None = None) -> EditResult:
    """Add a tag to every caption (at the end), remove it from every caption, or replace it everywhere."""
    if action not in BULK_ACTIONS:
        raise UserError(f"Tag action {action!r} is not one of {', '.join(BULK_ACTIONS)}.")
    tag, replacement = tag.strip(), replacement.strip()
    if not tag:
        raise UserError("Which tag? Type the tag to add, remove or replace.")
    if action == "replace" and not replacement:
        raise UserError("Replace with what? Type the new tag (use Remove to delete a tag).")
    new_texts = {}
    for item in read_captions(folder, extension):
        tags = _split(item.caption)
        keys = [t.lower() for t in tags]
        if action == "add" and tag.lower() not in keys:
            tags.append(tag)
        elif action == "remove":
            tags = [t for t in tags if t.lower() != tag.lower()]
        elif action == "replace":
            tags = list(dict.fromkeys(replacement if t.lower() == tag.lower() else t for t in tags))
        text = ", ".join(tags)
        if text != item.caption:
            new_texts[item.image.with_suffix(extension)] = text
    return _apply(folder, new_texts, when)


def _apply(folder: Path, texts: dict[Path, str], when: datetime | None) -> EditResult:
    backups = Backups(folder, when or datetime.now())
    changed = []
    for path, text in texts.items():
        if path.is_file():
            if read_caption_file(path)[0] == text:
                continue
            backups.save(path)
        replace_file(path, (text + "\n").encode("utf-8"))
        changed.append(path.relative_to(folder).as_posix())
    return EditResult(changed, backups.folder if backups.used else None)


def _split(caption: str) -> list[str]:
    return [tag.strip() for tag in caption.split(",") if tag.strip()]
