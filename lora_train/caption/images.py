"""The images of a folder to caption, each decoded to RGB or skipped with the reason.

The same checks as training (`data.images`): empty, damaged, truncated and over-large files are
skipped, with the file named, and the run goes on. What training converts (CMYK, 16-bit,
palette, transparency on white) is converted the same way, so every image trained on gets a
caption; an animated file is captioned from its first frame, the frame training uses, with a note.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lora_train.core.errors import UserError
from lora_train.data.images import UnusableImage, load_rgb, probe_image
from lora_train.data.scan import IMAGE_EXTENSIONS, list_images


@dataclass(frozen=True)
class LoadedImage:
    path: Path
    name: str  # relative to the captioned folder, for messages and metadata.csv
    image: Image.Image  # 8-bit RGB, upright, transparency on white
    note: str | None = None  # something the user should know (an animated file)


def find_images(folder: Path, recursive: bool = True) -> list[Path]:
    """The images to caption; a UserError when the folder is missing or holds none."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: give the folder of images to caption.")
    found = list_images(folder, recursive)
    if not found:
        raise UserError(f"No images in {folder}{' or its subfolders' if recursive else ''}: put "
                        f"{' '.join(IMAGE_EXTENSIONS)} files there.")
    return found


def load(path: Path, folder: Path) -> LoadedImage:
    """The decoded image, or UnusableImage saying why it is skipped."""
    info = probe_image(path)
    try:
        image = load_rgb(path, info.orientation)
    except UserError as exc:
        raise UnusableImage(str(exc)) from None
    return LoadedImage(path, path.relative_to(folder).as_posix(), image, _animated_note(path))


def _animated_note(path: Path) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
    return f"animated ({frames} frames): captioned from its first frame, the one training uses" if frames > 1 else None
