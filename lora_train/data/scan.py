"""Scanning a dataset: which images to train on, with which caption and how many repeats.

Two layouts:
- a folder (`train_data_dir`): images (.png .jpg .jpeg .webp .bmp, any case) with same-name
  caption files (`caption_extension`). Images directly in the folder form one group named after
  the folder; each subfolder is a group of its own, with everything nested below it. A subfolder
  named `N_name` (kohya style) repeats its images N times per epoch; other groups use `repeats`.
  Hidden files and folders (such as the `.lora_train_cache` folder) are skipped.
- a metadata.csv (`metadata_path`, columns filename,prompt): filenames are relative to
  `train_data_dir` when given, else (or when not found there) to the csv's folder; the group is
  named after the csv file, as kohya names fine-tuning metadata.

Every image is checked cheaply (see `images.probe_image`); unusable files are skipped with a
warning naming them, and so are rows naming missing files. Missing or empty captions fall back to
the trigger word. Nothing usable at all is a UserError saying what to do.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lora_train.data.captions import count_tags, read_caption_file, with_trigger
from lora_train.data.images import MAX_PIXELS, UnusableImage, probe_image
from lora_train.data.messages import grouped
from lora_train.data.metadata_csv import read_metadata_csv
from lora_train.core.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")  # a kohya `N_name` folder: N repeats


@dataclass(frozen=True)
class ImageRecord:
    """One usable image."""

    path: Path
    name: str  # the path as shown in messages (relative to the dataset folder)
    caption: str  # as written by the user ("" when there is none); the trigger word is added at use
    repeats: int
    folder: str  # its group: the key in tag_frequency and dataset_dirs
    size: tuple[int, int]  # (width, height), upright
    orientation: int = 1  # EXIF orientation to apply when decoding


@dataclass
class DatasetIndex:
    """The result of a scan; `tag_frequency` and `dataset_dirs` are kohya's ss_* metadata values."""

    records: list[ImageRecord]
    warnings: list[str] = field(default_factory=list)
    tag_frequency: dict[str, dict[str, int]] = field(default_factory=dict)
    dataset_dirs: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.records)

    @property
    def num_train_images(self) -> int:
        """Images seen per epoch: each image times its repeats (kohya's ss_num_train_images)."""
        return sum(record.repeats for record in self.records)


@dataclass(frozen=True)
class _Candidate:
    path: Path
    name: str
    folder: str
    repeats: int
    caption: str | None  # from metadata.csv; None: read the caption file beside the image


def scan_dataset(train_data_dir: str | Path | None, metadata_path: str | Path | None = None, *,
                 caption_extension: str = ".txt", trigger_word: str = "", repeats: int = 1,
                 max_pixels: int = MAX_PIXELS) -> DatasetIndex:
    """Index the dataset; see the module docstring for the layouts and rules."""
    root = _folder(train_data_dir) if train_data_dir else None
    extension = caption_extension if caption_extension.startswith(".") else f".{caption_extension}"
    problems: dict[str, list[str]] = {}
    if metadata_path:
        candidates, notes = _from_metadata(Path(metadata_path), root, repeats, problems)
    elif root is not None:
        candidates, notes = _from_folder(root, repeats)
    else:
        raise UserError("No dataset given: set train_data_dir to a folder of images (or metadata_path to a "
                        "metadata.csv).")
    records = [record for candidate in candidates
               if (record := _record(candidate, extension, trigger_word, max_pixels, problems))]
    if not records:
        raise UserError(f"None of the {len(candidates)} images in {metadata_path or root} can be used: "
                        f"{'; '.join(grouped(problems)[:3])}. Replace or remove the damaged files.")
    warnings = notes + grouped(problems)
    if root is not None and not metadata_path and (root / "metadata.csv").is_file() \
            and any(not record.caption for record in records):
        warnings.append(f"{root / 'metadata.csv'} exists but metadata_path is not set, so its captions are not "
                        f"used: set metadata_path to it.")
    return DatasetIndex(records, warnings, _tag_frequency(records, trigger_word), _dataset_dirs(records))


def _folder(path: str | Path) -> Path:
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"train_data_dir {path} is not a folder: give the folder that holds the training images.")
    return folder


def _from_folder(root: Path, repeats: int) -> tuple[list[_Candidate], list[str]]:
    notes: list[str] = []
    groups: list[tuple[str, Path, int, bool]] = [(root.name, root, repeats, False)]
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        match = REPEATS_FOLDER.match(child.name)
        count = int(match.group(1)) if match else repeats
        if count == 0:
            notes.append(f"{child}: a folder named 0_... repeats its images 0 times, so they are not used; "
                         f"rename it N_name with N >= 1.")
            continue
        groups.append((_unique(child.name, [g[0] for g in groups]), child, count, True))
    candidates = [_Candidate(path, path.relative_to(root).as_posix(), name, count, None)
                  for name, folder, count, recursive in groups for path in list_images(folder, recursive)]
    if not candidates:
        raise UserError(f"No images in {root}: put {' '.join(IMAGE_EXTENSIONS)} files there, each with a "
                        f"same-name caption file, or in subfolders named N_name to repeat them N times.")
    return candidates, notes


def _unique(name: str, taken: list[str]) -> str:
    """kohya's naming of repeated group names: name, name (2), name (3) ..."""
    unique, number = name, 2
    while unique in taken:
        unique, number = f"{name} ({number})", number + 1
    return unique


def list_images(folder: Path, recursive: bool) -> list[Path]:
    """Image files under `folder` (its subfolders too when `recursive`), sorted; hidden ones skipped."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if recursive and not d.startswith("."))
        found += [Path(directory, f) for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def _from_metadata(csv_path: Path, root: Path | None, repeats: int,
                   problems: dict[str, list[str]]) -> tuple[list[_Candidate], list[str]]:
    rows, notes = read_metadata_csv(csv_path)
    bases = list(dict.fromkeys([b for b in (root, csv_path.parent.resolve()) if b is not None]))
    missing = (f"named in {csv_path.name} but not found in {' or '.join(map(str, bases))}, so the row is "
               f"skipped: fix the filename (relative to train_data_dir or the csv's folder) or remove the row")
    candidates = []
    for row in rows:
        relative = row.filename.replace("\\", "/")
        path = next((base / relative for base in bases if (base / relative).is_file()), None)
        if path is None:
            _note(problems, missing, f"line {row.line} ({row.filename})")
        else:
            candidates.append(_Candidate(path, row.filename, csv_path.name, repeats, row.prompt))
    if not candidates:
        raise UserError(f"None of the {len(rows)} files named in {csv_path} exist (looked in "
                        f"{' and '.join(map(str, bases))}): check the filenames.")
    return candidates, notes


def _record(candidate: _Candidate, extension: str, trigger_word: str, max_pixels: int,
            problems: dict[str, list[str]]) -> ImageRecord | None:
    try:
        info = probe_image(candidate.path, max_pixels)
    except UnusableImage as exc:
        _note(problems, f"skipped, {exc}", candidate.name)
        return None
    except OSError as exc:
        _note(problems, f"skipped, cannot be opened ({exc.strerror or exc})", candidate.name)
        return None
    if candidate.caption is None:
        caption = _caption_file(candidate, extension, trigger_word, problems)
    else:
        caption = candidate.caption
        if not caption:
            _note(problems, f"the prompt in {candidate.folder} is empty, {_fallback(trigger_word)}", candidate.name)
    return ImageRecord(candidate.path, candidate.name, caption, candidate.repeats, candidate.folder, info.size,
                       info.orientation)


def _caption_file(candidate: _Candidate, extension: str, trigger_word: str, problems: dict[str, list[str]]) -> str:
    try:
        caption, warning = read_caption_file(candidate.path.with_suffix(extension))
    except FileNotFoundError:
        _note(problems, f"no caption file ({extension} beside the image), {_fallback(trigger_word)}", candidate.name)
        return ""
    except OSError as exc:
        _note(problems, f"the caption file cannot be read ({exc.strerror or exc}), {_fallback(trigger_word)}",
              candidate.name)
        return ""
    if warning:
        _note(problems, f"caption file {warning}", Path(candidate.name).with_suffix(extension).as_posix())
    if not caption:
        _note(problems, f"the caption file is empty, {_fallback(trigger_word)}", candidate.name)
    return caption


def _note(problems: dict[str, list[str]], problem: str, name: str) -> None:
    problems.setdefault(problem, []).append(name)


def _fallback(trigger_word: str) -> str:
    if trigger_word.strip():
        return f"so the trigger word '{trigger_word.strip()}' is its caption"
    return "so it is trained with an empty caption: write a caption or set trigger_word"


def _tag_frequency(records: list[ImageRecord], trigger_word: str) -> dict[str, dict[str, int]]:
    folders = dict.fromkeys(record.folder for record in records)
    return {folder: count_tags(with_trigger(r.caption, trigger_word) for r in records if r.folder == folder)
            for folder in folders}


def _dataset_dirs(records: list[ImageRecord]) -> dict[str, dict[str, int]]:
    dirs: dict[str, dict[str, int]] = {}
    for record in records:
        entry = dirs.setdefault(record.folder, {"n_repeats": record.repeats, "img_count": 0})
        entry["img_count"] += 1
    return dirs
