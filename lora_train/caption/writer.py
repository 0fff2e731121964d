"""Writing captions without ever losing one: modes, backups, `.txt` files and metadata.csv.

Modes for an image that already has a caption: `skip` (the default: keep it), `overwrite`,
`append` (the old caption, then the new tags it lacks) and `prepend` (the new tags it lacks,
then the old caption). Before any existing caption file (or metadata.csv) changes, it is copied
to `<folder>/.caption_backups/<run time>/` under its own relative path; the folder is hidden so
training never reads it, and `restore_backup` puts a backup back (backing up what it replaces
first). Every file is written atomically (`core.atomic`). The trigger word leads each caption
written. metadata.csv is `filename,prompt`, filenames relative to the csv's folder, exactly what
`train` reads with `metadata_path`.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lora_train.core.atomic import disk_error, replace_file, write_new_file
from lora_train.core.errors import UserError
from lora_train.data.captions import read_caption_file, with_trigger
from lora_train.data.metadata_csv import read_metadata_csv

MODES = ("skip", "overwrite", "append", "prepend")
BACKUP_FOLDER = ".caption_backups"


@dataclass(frozen=True)
class WriteOptions:
    mode: str = "skip"
    extension: str = ".txt"
    write_txt: bool = True
    metadata_csv: Path | None = None
    trigger_word: str = ""


@dataclass
class WriteReport:
    """What the run did to the caption files."""

    written: list[str] = field(default_factory=list)  # new captions
    changed: list[str] = field(default_factory=list)  # existing captions changed (backed up first)
    kept: list[str] = field(default_factory=list)  # existing captions left as they were
    csv_rows: int = 0  # rows in the metadata.csv written (0: none written)
    backup_dir: Path | None = None


def merge(existing: str, new: str, mode: str, trigger_word: str = "") -> str | None:
    """The caption to store, or None to leave the existing one alone."""
    existing, new = existing.strip(), new.strip()
    if existing and mode == "skip":
        return None
    if not existing or mode in ("skip", "overwrite"):
        return with_trigger(new, trigger_word)
    have = {unit.strip().lower() for unit in existing.split(",")}
    extra = ", ".join(unit.strip() for unit in new.split(",") if unit.strip() and unit.strip().lower() not in have)
    if not extra:
        return with_trigger(existing, trigger_word)
    return with_trigger(f"{existing}, {extra}" if mode == "append" else f"{extra}, {existing}", trigger_word)


def backup_name(started: datetime) -> str:
    return started.strftime("%Y%m%d-%H%M%S")


class CaptionWriter:
    """Stores each image's new caption according to the options; `finish()` writes metadata.csv."""

    def __init__(self, folder: Path, options: WriteOptions, started: datetime):
        if options.mode not in MODES:
            raise UserError(f"Caption mode {options.mode!r} is not one of {', '.join(MODES)}.")
        self.folder = folder
        self.options = options
        self.backups = Backups(folder, started)
        self.report = WriteReport()
        self.rows: dict[str, str] = {}

    def write(self, image: Path, caption: str) -> None:
        if self.options.write_txt:
            self._write_txt(image, caption)
        if self.options.metadata_csv is not None:
            self.rows[_csv_name(image, self.options.metadata_csv)] = caption

    def finish(self) -> WriteReport:
        if self.options.metadata_csv is not None and self.rows:
            self._write_csv(self.options.metadata_csv)
        self.report.backup_dir = self.backups.folder if self.backups.used else None
        return self.report

    def _write_txt(self, image: Path, caption: str) -> None:
        path = image.with_suffix(self.options.extension)
        name = path.relative_to(self.folder).as_posix()
        existing = read_caption_file(path)[0] if path.is_file() else ""
        text = merge(existing, caption, self.options.mode, self.options.trigger_word)
        if text is None or (path.is_file() and text == existing):
            self.report.kept.append(name)
            return
        if path.is_file():
            self.backups.save(path)
            _replace(path, (text + "\n").encode("utf-8"))
            self.report.changed.append(name)
        else:
            write_new_file(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
            self.report.written.append(name)

    def _write_csv(self, path: Path) -> None:
        old = {row.filename: row.prompt for row in read_metadata_csv(path)[0]} if path.is_file() else {}
        rows = dict(old)
        for name, caption in self.rows.items():
            text = merge(old.get(name, ""), caption, self.options.mode, self.options.trigger_word)
            if text is not None:
                rows[name] = text
        if rows == old:
            return
        self.report.csv_rows = len(rows)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["filename", "prompt"])
        writer.writerows(rows.items())
        if path.is_file():
            self.backups.save(path)
            _replace(path, buffer.getvalue().encode("utf-8"))
        else:
            write_new_file(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))


class Backups:
    """The run's backup folder, created when the first file is saved into it."""

    def __init__(self, folder: Path, started: datetime, suffix: str = ""):
        self.root = folder
        self.folder = folder / BACKUP_FOLDER / (backup_name(started) + suffix)
        self.used = False

    def save(self, path: Path) -> None:
        target = self.folder / _relative(path, self.root)
        if target.exists():  # already saved in this run: the first copy is the original
            return
        write_new_file(target, lambda tmp: shutil.copyfile(path, tmp))
        self.used = True


def list_backups(folder: Path) -> list[str]:
    """Backup names of a folder, oldest first."""
    root = folder / BACKUP_FOLDER
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def restore_backup(folder: Path, name: str, started: datetime) -> tuple[list[str], Path | None]:
    """Put the files of backup `name` ("latest" for the newest) back; returns (restored names, the backup
    of the files it replaced, if any)."""
    names = list_backups(folder)
    if not names:
        raise UserError(f"{folder} has no caption backups ({folder / BACKUP_FOLDER} is empty or missing).")
    name = names[-1] if name == "latest" else name
    source = folder / BACKUP_FOLDER / name
    if name not in names:
        raise UserError(f"No caption backup {name!r} in {folder / BACKUP_FOLDER}; there are: {', '.join(names)}.")
    backups = Backups(folder, started, suffix="-before-restore")
    if backups.folder == source:
        raise UserError(f"Backup {name} was made this second; wait a second and restore again.")
    restored = []
    for saved in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = saved.relative_to(source)
        target = folder / relative
        data = saved.read_bytes()
        if target.is_file():
            if target.read_bytes() == data:
                continue
            backups.save(target)
        _replace(target, data)
        restored.append(relative.as_posix())
    return restored, backups.folder if backups.used else None


def _replace(path: Path, data: bytes) -> None:
    try:
        replace_file(path, data)
    except OSError as exc:
        raise disk_error(exc, path) from exc


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:  # a metadata.csv outside the folder: saved by its name
        return Path(path.name)


def _csv_name(image: Path, csv_path: Path) -> str:
    try:
        return image.resolve().relative_to(csv_path.resolve().parent).as_posix()
    except ValueError:
        return str(image.resolve())
