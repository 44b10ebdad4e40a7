"""What a watched folder holds: which paths are items, how to probe them, their items.

Contract:

- :class:`Layout` decides which paths below ``root`` are items. Every path component
  below ``root`` that matches an ``ignore`` glob is skipped (with its subtree); an
  item's own name must match one of ``patterns``. Without ``recursive`` only files
  directly in ``root`` are items; with it, files at any depth. With ``dirs``, each
  folder directly in ``root`` is one item (what lies below it belongs to it), and files
  directly in ``root`` are items as usual.
- Probes take the OS calls as arguments (``stat=``, ``scandir=``), so tests can pass
  their own. Symbolic links to files are followed; links to folders are not entered.
- :func:`seen_key` names one version of one item for one input node; the store
  commits it with the pebble, so a version becomes a pebble at most once.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mode
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import quote

from cryoflow.watch.settle import Settled, Version

log = logging.getLogger("cryoflow.watch")

Stat = Callable[[str], os.stat_result]
ScanDir = Callable[[str], Any]
"""``os.scandir``: a context manager iterating ``os.DirEntry`` objects."""

DEFAULT_IGNORE = (".*", "*.part", "*.tmp")
_KEY_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%|")


@dataclass(frozen=True)
class Layout:
    """Which paths below ``root`` are items (see the module contract)."""

    root: str  #: an absolute, normalised folder path
    recursive: bool = False
    dirs: bool = False
    patterns: tuple[str, ...] = ("*",)
    ignore: tuple[str, ...] = DEFAULT_IGNORE

    def ignored(self, name: str) -> bool:
        return any(fnmatchcase(name, glob) for glob in self.ignore)

    def wanted(self, name: str) -> bool:
        return not self.ignored(name) and any(fnmatchcase(name, g) for g in self.patterns)

    def target(self, path: str) -> str | None:
        """The item an event at ``path`` concerns (itself or its top folder), or None."""
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
            return None
        parts = rel.split(os.sep)
        if any(self.ignored(part) for part in parts):
            return None
        if len(parts) == 1:
            return path if self.wanted(parts[0]) else None
        if self.dirs:
            return os.path.join(self.root, parts[0]) if self.wanted(parts[0]) else None
        if self.recursive and self.wanted(parts[-1]):
            return path
        return None

    def scan(self, top: str | None = None, *, scandir: ScanDir = os.scandir) -> Iterator[str]:
        """Every item below ``top`` (default ``root``), without reading file contents."""
        stack = [top or self.root]
        while stack:
            folder = stack.pop()
            for entry in _entries(folder, scandir):
                if self.ignored(entry.name):
                    continue
                if _is_dir(entry):
                    if self.dirs and folder == self.root:
                        if self.wanted(entry.name):
                            yield entry.path
                    elif self.recursive and not self.dirs:
                        stack.append(entry.path)
                elif self.wanted(entry.name):
                    yield entry.path

    def probe(self, path: str, *, stat: Stat = os.stat,
              scandir: ScanDir = os.scandir) -> tuple[Version, bool] | None:
        """``(version, isdir)`` of an item now, or None when it is gone or not an item."""
        try:
            st = stat(path)
        except OSError:
            return None
        if stat_mode.S_ISREG(st.st_mode):
            return Version(st.st_size, st.st_mtime_ns, st.st_ino), False
        if stat_mode.S_ISDIR(st.st_mode) and self.dirs and os.path.dirname(path) == self.root:
            size, newest = tree_signature(path, st.st_mtime_ns, scandir=scandir)
            return Version(size, newest, st.st_ino), True
        return None


def tree_signature(top: str, mtime_ns: int, *, scandir: ScanDir = os.scandir) -> tuple[int, int]:
    """Bytes of every file below ``top`` and the newest mtime_ns of anything there."""
    size, newest = 0, mtime_ns
    stack = [top]
    while stack:
        for entry in _entries(stack.pop(), scandir):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            newest = max(newest, st.st_mtime_ns)
            if stat_mode.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            else:
                size += st.st_size
    return size, newest


def item_for(root: str, settled: Settled) -> dict[str, Any]:
    """The pebble item of a settled path: the dirwatcher's outputs."""
    return {
        "fullpath": settled.path,
        "relpath": os.path.relpath(settled.path, root),
        "datasize": settled.version.size,
        "mtime": settled.version.mtime_ns / 1e9,
        "isdir": settled.isdir,
    }


def seen_key(node: str, path: str, version: Version) -> str:
    """``node|path|size|mtime_ns|inode``, the path percent-encoded to plain ASCII.

    The encoding is one-to-one (``%`` and ``|`` are encoded too), so names with
    newlines or bytes that are not UTF-8 get keys of their own that SQLite can store.
    """
    encoded = quote(os.fsencode(path), safe=_KEY_SAFE)
    return f"{node}|{encoded}|{version.size}|{version.mtime_ns}|{version.inode}"


def _entries(folder: str, scandir: ScanDir) -> list[Any]:
    try:
        with scandir(folder) as listing:
            return list(listing)
    except FileNotFoundError:
        return []  # removed while we looked
    except OSError as exc:
        log.warning("cannot list %r: %s", folder, exc)
        return []


def _is_dir(entry: Any) -> bool:
    try:
        return bool(entry.is_dir(follow_symlinks=False))
    except OSError:
        return False
