"""What protects the user's state file: checks before opening it, moving it aside,
and turning sqlite errors into :class:`StoreError` sentences.

Contract: nothing here ever deletes a state database. A file that is not a usable
SQLite database is refused with a message that says it was kept and where backups
are; ``--fresh`` renames the old database (and its ``-wal``) to
``state.db.<time>.bak`` instead of removing it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryoflow.errors import StoreBrokenError, StoreError, StoreFullError

DB_NAME = "state.db"
_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100


@contextmanager
def translated(db: Path) -> Iterator[None]:
    """Re-raise any ``sqlite3.Error`` in the block as a :class:`StoreError` for ``db``."""
    try:
        yield
    except sqlite3.Error as e:
        raise store_error(e, db) from e


def store_error(error: sqlite3.Error, db: Path) -> StoreError:
    """The :class:`StoreError` that explains ``error`` on ``db`` to a user."""
    name = getattr(error, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or "database or disk is full" in str(error):
        return StoreFullError(f"state store full: free disk space under {db.parent}")
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return damaged(db, str(error))
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in str(error):
        return StoreBrokenError(
            f"state store {db}: {error}; the disk failed a read or write. Check the disk "
            "(e.g. dmesg), then start again; if the database is damaged, restore a backup "
            "or move the state folder aside")
    return StoreError(f"state store {db}: {error}")


def damaged(db: Path, reason: str) -> StoreBrokenError:
    """The error for a state file that cannot be used; it names the backups."""
    backups = sorted(p.name for p in db.parent.glob(DB_NAME + ".*.bak"))
    hint = f" (backups there: {', '.join(backups)})" if backups else ""
    return StoreBrokenError(
        f"{db} is not a usable cryoflow state database ({reason}); it was left as it is. "
        f"Restore a backup{hint}, move it away (--fresh keeps it as a .bak and starts "
        "empty), or pick another folder with --state"
    )


def check_integrity(conn: sqlite3.Connection, db: Path) -> None:
    """``PRAGMA quick_check`` at open: refuse a damaged database before using it."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise damaged(db, f"PRAGMA quick_check failed: {e}") from e
    found = [str(row[0]) for row in rows]
    if found != ["ok"]:
        first = found[0] if len(found[0]) <= 160 else found[0][:157] + "..."
        more = f" and {len(found) - 1} more problems" if len(found) > 1 else ""
        raise damaged(db, f"PRAGMA quick_check: {first}{more}")


def check_file(db: Path) -> None:
    """Refuse (``StoreError``) a file that is not an SQLite database or is truncated.

    The size check only applies when no ``-wal`` file holds pages that a checkpoint
    has still to copy into the database.
    """
    try:
        with db.open("rb") as f:
            header = f.read(_HEADER_SIZE)
        size = db.stat().st_size
        wal = _size_or_zero(wal_path(db))
    except OSError as e:
        raise StoreError(f"cannot read the state database {db}: {e.strerror}") from e
    if len(header) < _HEADER_SIZE or not header.startswith(_MAGIC):
        raise damaged(db, "file is not an SQLite database")
    if not wal:
        _check_size(db, header, size)


def _check_size(db: Path, header: bytes, size: int) -> None:
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96] and pages > 0
    if size % page_size or (header_valid and size < pages * page_size):
        raise damaged(db, f"file is truncated: {size} bytes")


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wal_path(db: Path) -> Path:
    """The write-ahead log that belongs to ``db``."""
    return db.with_name(db.name + "-wal")


def move_aside(db: Path, now: float) -> Path | None:
    """Rename ``db`` (with its ``-wal``) to ``<db>.<time>.bak``; return the new path.

    Returns None when there is no database. The ``-shm`` index is rebuilt by SQLite
    and is removed rather than kept.
    """
    if not db.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    target = _free_name(db.with_name(f"{db.name}.{stamp}.bak"))
    try:
        if wal_path(db).exists():
            os.replace(wal_path(db), wal_path(target))
        os.replace(db, target)
        db.with_name(db.name + "-shm").unlink(missing_ok=True)
        sync_dir(db.parent)
    except OSError as e:
        raise StoreError(f"cannot move {db} aside to {target.name}: {e.strerror}") from e
    return target


def move_orphan_wal(db: Path, now: float) -> Path | None:
    """Before creating ``db``: rename a ``-wal`` left by a deleted database.

    SQLite would replay its frames into the new database and corrupt it. The file is
    kept as ``<db>.<time>.orphan-wal``; the ``-shm`` index is removed.
    """
    wal = wal_path(db)
    db.with_name(db.name + "-shm").unlink(missing_ok=True)
    if not wal.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    target = _free_name(db.with_name(f"{db.name}.{stamp}.orphan-wal"))
    try:
        os.replace(wal, target)
    except OSError as e:
        raise StoreError(f"cannot move the orphaned {wal} aside: {e.strerror}") from e
    return target


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists() or wal_path(candidate).exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def publish(tmp: Path, db: Path) -> None:
    """Atomically put a fully written new database at ``db``."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, db)
        sync_dir(db.parent)
    except OSError as e:
        raise StoreError(f"cannot create the state database {db}: {e.strerror}") from e


def sync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "afs"})
"""File systems on which SQLite's locking and WAL index are not safe."""


def check_local(state_dir: Path, *, mountinfo: str | None = None) -> None:
    """Refuse a state folder on a network file system (SQLite corrupts data there).

    ``mountinfo`` is the text of ``/proc/self/mountinfo``, read when not given; where it
    cannot be read (not Linux) the check is skipped.
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return
    fstype = _fs_type(state_dir.resolve(), mountinfo)
    if fstype in NETWORK_FS:
        raise StoreError(
            f"state folder {state_dir} is on a network file system ({fstype}), where "
            "SQLite can corrupt the state; pick a folder on a local disk with --state"
        )


def _fs_type(path: Path, mountinfo: str) -> str | None:
    """The type of the file system mounted deepest above ``path``."""
    best, fstype = -1, None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        mount = Path(fields[4].replace("\\040", " "))
        if path.is_relative_to(mount) and len(mount.parts) > best:
            best, fstype = len(mount.parts), line.split(" - ", 1)[1].split(" ", 1)[0]
    return fstype


def make_dir(state_dir: Path) -> None:
    """Create the state folder (and its parents) or say why it cannot be."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the state folder {state_dir}: {e.strerror}") from e
