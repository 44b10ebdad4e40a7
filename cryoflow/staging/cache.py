"""A download cache shared by the workers of one user on one host.

Entries are keyed by the URL (without credentials) and the object's version (ETag and
size, or size and modification time where there is no ETag), so a changed object is
fetched again. Entries are whole files, written through a staging name and renamed, so
workers can share the folder; a job always gets its own copy, never the entry itself.
The oldest entries (by last use) are removed when the folder grows over ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from cryoflow.errors import StagingError
from cryoflow.staging.base import Meta, ParsedURL
from cryoflow.staging.local import PART_MARK, discard, new_part_file, promote


@dataclass(frozen=True)
class DownloadCache:
    """The cache folder and its size budget."""

    folder: Path
    max_bytes: int

    def open(self) -> DownloadCache:
        """Create the folder (mode 0700) and refuse one that another user could write."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(self.folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise StagingError(
                f"download cache {self.folder} is not a private folder of this user: "
                "remove it or set staging.cache_dir"
            )
        return self

    @staticmethod
    def key(url: ParsedURL, meta: Meta) -> str | None:
        """The entry name for this version of ``url``; None when it has no version."""
        version = meta.version()
        if version is None:
            return None
        return hashlib.sha256(f"{url.redacted()}\n{version}".encode()).hexdigest()

    def copy_to(self, key: str, size: int | None, dest: Path) -> bool:
        """Copy the entry into ``dest``; False when it is missing or of the wrong size."""
        entry = self.folder / key
        try:
            if size is None or entry.stat().st_size != size:
                return False
            shutil.copyfile(entry, dest)
            os.utime(entry)
        except FileNotFoundError:
            return False
        return dest.stat().st_size == size

    def store(self, key: str, src: Path) -> None:
        """Add a verified download; failures only cost the cache entry."""
        part = new_part_file(self.folder, key)
        try:
            shutil.copyfile(src, part)
            promote(part, self.folder / key)
        except OSError:
            discard(part)
            return
        self.evict()

    def evict(self) -> None:
        """Remove the least recently used entries until the folder fits ``max_bytes``."""
        entries = []
        for path in self.folder.iterdir():
            if PART_MARK in path.name:
                continue
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            entries.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            discard(path)
            total -= size
