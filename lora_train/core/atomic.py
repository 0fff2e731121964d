"""Write a file all at once or not at all: a new one never over an existing file, or a cache entry in place.

The bytes go to a hidden temporary file in the destination folder (`.name.XXXXXXXX.tmp`, which the
WebUI does not list; `temporary_name_pattern` matches them), are flushed to disk with fsync, and the file is then published under its
name with a hard link, which fails instead of replacing a file that appeared meanwhile (on file
systems without hard links: a rename after an existence check). A failure at any point removes
the temporary file, so a full disk or a killed process never leaves a partial LoRA behind.
Disk errors become UserErrors naming the folder. `write_new_folder` does the same for a whole folder
(a PEFT adapter). `rewrite_file` / `rewrite_folder` replace what is there in one rename instead: only
for files the writer owns (a resumed run's own partial save). `replace_file` (for cache entries, which
may be rewritten) publishes with a rename over the old file too and leaves errors to its caller.
Published files get the mode a plain `open()` would give them (0666 less the umask; folders 0777 less
it), not the 0600 of the temporary file, so a WebUI run by another user, or a shared models folder, can
read them; the mode is set again once the writer is done, as some writers (safetensors' `save_file`)
replace the file they are given with a 0600 one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UserError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_TEMPORARY_SUFFIX = ".tmp"
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def temporary_name_pattern(name_pattern: str) -> re.Pattern[str]:
    """Matches the temporary files of writes to files whose names fullmatch the regex `name_pattern`
    (what a process killed while writing leaves behind)."""
    return re.compile(rf"\.(?:{name_pattern})\.[a-z0-9_]{{8}}{re.escape(_TEMPORARY_SUFFIX)}")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # folders cannot be opened on Windows
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def _plain_mode(path: Path) -> None:
    """Give `path` the mode a plain `open()` / `mkdir()` would (0666 / 0777 less the umask)."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


def _temporary_file(path: Path) -> tuple[int, Path]:
    """An open descriptor and the name of a new hidden temporary file beside `path`, with a plain file's mode."""
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX, dir=path.parent)
    _plain_mode(Path(name))  # mkstemp makes it 0600
    return descriptor, Path(name)


def _publish(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares)
        if path.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.rename(temporary, path)


def disk_error(exc: OSError, path: Path) -> UserError:
    """The UserError for a failed write of `path`: exists, no space, not writable, or other."""
    folder = path.parent
    if isinstance(exc, FileExistsError):
        return UserError(f"{path} already exists and is never overwritten: choose another name.")
    if exc.errno in _NO_SPACE:
        return UserError(f"Not enough free space in {folder} to save {path.name}: free some disk space or set "
                         "output_dir to another drive. Nothing was written.")
    if exc.errno in _NOT_WRITABLE:
        return UserError(f"Cannot write to the folder {folder} ({exc.strerror}): set output_dir to a folder you "
                         "can write to. Nothing was written.")
    return UserError(f"Could not save {path} ({exc.strerror or exc}). Nothing was written.")


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = _temporary_file(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_new_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Create `path` with what `write(temporary_path)` writes; UserError if it exists or the disk fails."""
    return _write_file(Path(path), write, _publish)


def rewrite_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write `path` anew with what `write(temporary_path)` writes, replacing the file there in one rename: for
    a file the writer owns (a resumed run's own partial save, see core/ownership.py), never a user's."""
    return _write_file(Path(path), write, os.replace)


def _write_file(path: Path, write: Callable[[Path], None], publish: Callable[[Path, Path], None]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = _temporary_file(path)
        os.close(descriptor)
        try:
            write(temporary)
            _plain_mode(temporary)
            _fsync(temporary)
            publish(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_folder(path.parent)
    except OSError as exc:
        raise disk_error(exc, path) from exc
    return path


def write_new_folder(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Create the folder `path` with what `write(temporary_folder)` puts in it, all at once or not at all.

    The files are written into a hidden `.name.XXXX.tmp` folder beside it, fsynced, and the folder is
    renamed into place; an existing `path` is never replaced (UserError), and a failure leaves nothing.
    """
    return _write_folder(Path(path), write, replace=False)


def rewrite_folder(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write_new_folder` over a folder the writer owns: the old folder is moved into a hidden `.name.XXXX.tmp`
    folder, the new one renamed into place, then the old one deleted (a process killed between the two
    renames leaves the old one in the hidden folder, which the next run removes; a resumed run saves again)."""
    return _write_folder(Path(path), write, replace=True)


def _write_folder(path: Path, write: Callable[[Path], None], replace: bool) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_folder(path)
        old = _temporary_folder(path) if replace else None
        try:
            write(temporary)
            for item in temporary.rglob("*"):
                _plain_mode(item)
                if item.is_file():
                    _fsync(item)
            moved = old / path.name if old is not None and path.exists() else None
            if moved is not None:
                os.rename(path, moved)
            try:
                if path.exists():
                    raise FileExistsError(errno.EEXIST, "File exists", str(path))
                os.rename(temporary, path)
            except OSError:
                if moved is not None and not path.exists():
                    os.rename(moved, path)  # the old folder back, as it was
                raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        _fsync_folder(path.parent)
    except OSError as exc:
        raise disk_error(exc, path) from exc
    return path


def _temporary_folder(path: Path) -> Path:
    """A new hidden temporary folder beside `path`, with a plain folder's mode."""
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX, dir=path.parent))
    _plain_mode(temporary)  # mkdtemp makes it 0700
    return temporary
