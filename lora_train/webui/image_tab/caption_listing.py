"""What the Caption section lists for a folder, and the folder's fingerprint that says when to list it again.

The listing is the gallery (thumbnails captioned `name: caption`), the image names, the tag counts and
the backups. A page's memory (`compat.page_memory`) records the folder it lists, that folder's
fingerprint, the names in gallery order (a click on a thumbnail picks its image) and the backups; the
periodic update lists the folder again only when its fingerprint changed, and the backup choice moves
to the newest backup only when the backups changed, so a backup the user chose stays chosen.
"""

from __future__ import annotations

import hashlib
import html
import os
from pathlib import Path
from typing import Any

import gradio as gr

from ...caption.edit import read_captions, tag_counts
from ...caption.writer import list_backups
from ...core.errors import UserError
from ...data.images import load_rgb

THUMBNAIL = 160
GALLERY_LIMIT = 60
COUNTS_SHOWN = 40


def fingerprint(folder: Path) -> str:
    """Changes when an image or caption of `folder` (its subfolders too) is added, removed or rewritten, or a
    backup is made; from the files' names, sizes and times only, cheap enough for every second."""
    digest = hashlib.sha256("\0".join(list_backups(folder)).encode())
    for root, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))  # the backups: their names
        for name in sorted(files):
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            digest.update(f"{root}/{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def listing(folder: Path, page: dict[str, Any], note: Any) -> tuple:
    """(gallery, image choices, tag counts, backup choice, note) for `folder`, recorded in `page`."""
    seen = fingerprint(folder)
    items = read_captions(folder)
    gallery, shown = [], []
    for item in items[:GALLERY_LIMIT]:
        try:
            image = load_rgb(item.image)
        except UserError:
            continue
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        gallery.append((image, f"{item.name}: {item.caption or '(no caption)'}"[:300]))
        shown.append(item.name)
    backups = list_backups(folder)
    moved = backups != page.get("backups") or str(folder) != page.get("folder")
    backup = gr.update(choices=backups, value=backups[-1] if backups else None) if moved else gr.update()
    page.update(folder=str(folder), fingerprint=seen, shown=shown, backups=backups)
    return gallery, gr.update(choices=[item.name for item in items]), counts_html(tag_counts(items), len(items)), \
        backup, note


def changed(page: dict[str, Any]) -> bool:
    """Whether the folder the page lists has changed since it was listed (False when it lists none)."""
    folder = page.get("folder")
    return bool(folder) and Path(folder).is_dir() and fingerprint(Path(folder)) != page.get("fingerprint")


def counts_html(counts: list[tuple[str, int]], images: int) -> str:
    if not counts:
        return ""
    rows = "".join(f"<tr><td>{html.escape(tag)}</td><td>{count}</td></tr>" for tag, count in counts[:COUNTS_SHOWN])
    more = f"<p>and {len(counts) - COUNTS_SHOWN} more tags</p>" if len(counts) > COUNTS_SHOWN else ""
    return (f'<div class="lora-train-tag-counts"><p>{len(counts)} tags over {images} images</p>'
            f"<table><tr><th>tag</th><th>images</th></tr>{rows}</table>{more}</div>")
