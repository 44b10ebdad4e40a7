"""The ``file://`` stager (plain paths too), and the atomic-file helpers every stage uses.

Files are written under a staging name ``.<name>.part-XXXX`` in the destination folder,
flushed to disk, and renamed into place, so a crash never leaves a file that looks
complete; :func:`sweep_parts` removes what a crash left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

from cryoflow.errors import StagingError
from cryoflow.staging.base import Meta, MissingObjectError, ParsedURL, check_expected
from cryoflow.staging.config import StagingConfig
from cryoflow.staging.retry import local_write_error

PART_MARK = ".part-"
"""Staging files and folders are named ``.<name>.part-XXXX``."""


def new_part_file(folder: Path, name: str) -> Path:
    """Create an empty staging file for ``name`` in ``folder`` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f".{name[:100]}{PART_MARK}", dir=folder)
    os.close(fd)
    return Path(path)


def promote(part: Path, final: Path) -> None:
    """Flush ``part`` to disk and rename it to ``final`` (replacing a file there)."""
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, final)
    _fsync_dir(final.parent)


def discard(path: Path) -> None:
    """Remove a staging file or folder; missing is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_parts(folder: Path, *, min_age_s: float = 0.0, now: float | None = None) -> list[Path]:
    """Remove the ``.*.part-*`` leftovers in ``folder`` not touched for ``min_age_s``."""
    if not folder.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - min_age_s
    removed = [p for p in folder.glob(f".*{PART_MARK}*") if _older(p, cutoff)]
    for path in removed:
        discard(path)
    return removed


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems do not fsync folders
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class LocalStager:
    """Files on this host's file system (shared disks included)."""

    def __init__(self, config: StagingConfig | None = None) -> None:
        self.config = config or StagingConfig()

    def stat(self, url: ParsedURL) -> Meta:
        try:
            info = os.stat(url.path)
        except OSError as exc:
            raise _error(exc, "cannot read", url) from exc
        is_dir = os.path.isdir(url.path)
        return Meta(size=None if is_dir else info.st_size, mtime=info.st_mtime, is_dir=is_dir)

    def fetch(self, url: ParsedURL, dest: Path, *, expected: Meta | None = None) -> Meta:
        meta = self.stat(url)
        if meta.is_dir:
            raise StagingError(f"{url} is a folder, not a file")
        check_expected(meta, expected, url)
        try:
            shutil.copyfile(url.path, dest)
        except OSError as exc:
            raise _copy_error(exc, url.path, str(url)) from exc
        copied = dest.stat().st_size
        if copied != meta.size:
            raise StagingError(f"{url} changed while it was copied ({copied} of {meta.size} bytes)")
        return meta

    def push(self, src: Path, url: ParsedURL) -> str:
        if url.is_folder:
            raise StagingError(f"cannot upload {src} to the folder URL {url}: name the file")
        final = Path(url.path)
        part = new_part_file(final.parent, final.name)
        try:
            shutil.copyfile(src, part)
            promote(part, final)
        except OSError as exc:
            discard(part)
            raise _copy_error(exc, str(src), str(url)) from exc
        return url.redacted()

    def remove(self, url: ParsedURL, *, recursive: bool = False) -> None:
        path = Path(url.path)
        try:
            if path.is_dir() and not path.is_symlink():
                if not recursive:
                    raise StagingError(f"{url} is a folder: remove it with recursive")
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise _error(exc, "cannot remove", url) from exc

    def close(self) -> None:
        """Nothing to release."""


def _copy_error(exc: OSError, source: str, dest: str) -> StagingError:
    """Blame the source when reading it failed, else the write to ``dest``."""
    if exc.filename is not None and os.fsdecode(exc.filename) == source:
        if isinstance(exc, FileNotFoundError):
            return MissingObjectError(f"{source} does not exist")
        return StagingError(f"cannot read {source}: {exc.strerror or exc}")
    return local_write_error(exc, dest)


def _error(exc: OSError, doing: str, url: ParsedURL) -> StagingError:
    if isinstance(exc, FileNotFoundError):
        return MissingObjectError(f"{url} does not exist")
    return StagingError(f"{doing} {url}: {exc.strerror or exc}")
