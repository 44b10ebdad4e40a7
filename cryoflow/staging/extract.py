"""Safe extraction of zip and tar archives: the one place cryoflow unpacks files.

Every member is checked here, one by one, before a byte of it is written; the
``tarfile`` extraction filters are not relied on (Python 3.11.7 is affected by
CVE-2025-4517 even with ``filter='data'``), and nothing is ever extracted through
``TarFile.extract``/``ZipFile.extract``. The rules:

- names must be relative, without ``..`` components (also after Unicode NFKC folding,
  so look-alikes of ``..`` and ``/`` count), without NUL bytes or backslashes;
- only regular files and folders are extracted: symbolic links and hard links are
  rejected whatever their target (a simple rule that closes every link trick), and so
  are devices, fifos and other special members;
- the number of members, the total extracted size and the compression ratio are capped.

Members are written into a fresh folder beside the target (``.<name>.part-XXXX``),
which is renamed into place only when the whole archive was extracted; on any failure
it is removed, so a partial extraction is never visible under the target's name.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from cryoflow.errors import StagingError, UnsafeArchiveError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
"""File name endings read as tar archives (any compression ``tarfile`` knows)."""
ZIP_SUFFIXES = (".zip",)

RATIO_FLOOR_BYTES = 1 << 20
"""Below this many extracted bytes the compression ratio is not checked."""
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


class _Unsafe(Exception):
    """A member breaks a rule; the message is the reason (wrapped with names later)."""


def is_archive(path: Path) -> bool:
    """True when ``path``'s name ends like a zip or tar archive."""
    name = path.name.lower()
    return name.endswith(TAR_SUFFIXES + ZIP_SUFFIXES)


def extract_archive(
    archive: Path,
    target_dir: Path,
    *,
    max_members: int = 100_000,
    max_total_bytes: int = 50 * 2**30,
    max_ratio: float = 200.0,
) -> list[Path]:
    """Extract ``archive`` (zip, tar, tar.gz/tgz, tar.bz2, tar.xz) into ``target_dir``.

    Returns the top-level entries as full paths under ``target_dir``, in the order the
    archive first names them. When ``target_dir`` does not exist it is created by one
    rename; when it exists, each top-level entry replaces an entry of the same name.
    ``max_ratio`` bounds extracted bytes per archive byte (zip: per member too) once
    more than :data:`RATIO_FLOOR_BYTES` were extracted.

    Raises :class:`UnsafeArchiveError` naming the archive and the member for a member
    that breaks a rule or a cap, and :class:`StagingError` when the archive cannot be
    read or written out. Either way nothing appears under ``target_dir``.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    extractor = _extractor_for(archive)
    budget = _Budget(archive, max_members, max_total_bytes, max_ratio)
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.part-", dir=target_dir.parent))
    try:
        tops = _run_extractor(extractor, archive, staging, budget)
        return _promote(staging, target_dir, tops)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run_extractor(
    extractor: _Extractor, archive: Path, staging: Path, budget: _Budget
) -> list[str]:
    try:
        return extractor(archive, staging, budget)
    except _Unsafe as exc:  # raised outside a member (should not happen); keep it clear
        raise UnsafeArchiveError(f"unsafe archive {archive}: {exc}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise StagingError(f"cannot extract {archive}: {type(exc).__name__}: {exc}") from exc


_Extractor = Callable[[Path, Path, "_Budget"], list[str]]


def _extractor_for(archive: Path) -> _Extractor:
    """Pick the reader by file name, else by content; fail clearly for anything else."""
    if not archive.is_file():
        raise StagingError(f"archive {archive} does not exist or is not a file")
    name = archive.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return _extract_zip
    if name.endswith(TAR_SUFFIXES) or tarfile.is_tarfile(archive):
        return _extract_tar
    if zipfile.is_zipfile(archive):
        return _extract_zip
    raise StagingError(f"{archive} is not a zip or tar archive")


class _Budget:
    """Counts members and bytes against the caps of one extraction."""

    def __init__(self, archive: Path, max_members: int, max_bytes: int, max_ratio: float):
        self.archive = archive
        self.archive_bytes = max(archive.stat().st_size, 1)
        self.max_members, self.max_bytes, self.max_ratio = max_members, max_bytes, max_ratio
        self.members = 0
        self.total = 0

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise _Unsafe(f"more than {self.max_members} members")

    def count_bytes(self, n: int) -> None:
        self.total += n
        if self.total > self.max_bytes:
            raise _Unsafe(f"extracted size exceeds {self.max_bytes} bytes")
        if self.total > RATIO_FLOOR_BYTES and self.total / self.archive_bytes > self.max_ratio:
            raise _Unsafe(f"compression ratio exceeds {self.max_ratio:g}")

    def unsafe(self, name: str, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"unsafe archive member {name!r} in {self.archive}: {reason}")


def member_parts(name: str) -> tuple[str, ...]:
    """Split a member name into safe path parts, or raise ``_Unsafe`` with the reason.

    ``.`` and empty components are dropped, so ``./a//b`` gives ``("a", "b")`` and
    ``./`` gives ``()`` (the archive's root folder).
    """
    if "\x00" in name:
        raise _Unsafe("the name contains a NUL byte")
    if "\\" in name:
        raise _Unsafe("the name contains a backslash")
    folded = unicodedata.normalize("NFKC", name)
    if folded.startswith("/") or _DRIVE.match(folded):
        raise _Unsafe("absolute path")
    if ".." in folded.split("/"):
        raise _Unsafe("'..' would leave the target folder")
    return tuple(part for part in name.split("/") if part not in ("", "."))


def _extract_tar(archive: Path, staging: Path, budget: _Budget) -> list[str]:
    tops: dict[str, None] = {}
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            try:
                _extract_tar_member(tar, member, staging, budget, tops)
            except _Unsafe as exc:
                raise budget.unsafe(member.name, str(exc)) from None
    return list(tops)


def _extract_tar_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    staging: Path,
    budget: _Budget,
    tops: dict[str, None],
) -> None:
    budget.count_member()
    parts = member_parts(member.name)
    _check_tar_type(member)
    if parts:
        tops.setdefault(parts[0], None)
    dest = staging.joinpath(*parts)
    if member.isdir():
        _make_dir(dest)
        return
    if not parts:
        raise _Unsafe("a file member without a name")
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - isreg() members always have data
        raise _Unsafe("no data for a regular file")
    with source:
        _write_file(source, dest, member.mode, budget)
    _set_mtime(dest, member.mtime)


def _check_tar_type(member: tarfile.TarInfo) -> None:
    if member.issym():
        raise _Unsafe(f"symbolic links are not extracted (link to {member.linkname!r})")
    if member.islnk():
        raise _Unsafe(f"hard links are not extracted (link to {member.linkname!r})")
    if member.ischr() or member.isblk():
        raise _Unsafe("device nodes are not extracted")
    if member.isfifo():
        raise _Unsafe("fifos are not extracted")
    if not (member.isreg() or member.isdir()):
        raise _Unsafe(f"member type {member.type!r} is not extracted")


def _extract_zip(archive: Path, staging: Path, budget: _Budget) -> list[str]:
    tops: dict[str, None] = {}
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info, parts in _checked_zip_members(infos, budget):
            try:
                _extract_zip_member(zf, info, parts, staging, budget)
            except _Unsafe as exc:
                raise budget.unsafe(info.filename, str(exc)) from None
            if parts:
                tops.setdefault(parts[0], None)
    return list(tops)


def _checked_zip_members(
    infos: list[zipfile.ZipInfo], budget: _Budget
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Check every member (names, types, caps) from the central directory first."""
    checked = []
    declared = _Budget(budget.archive, budget.max_members, budget.max_bytes, budget.max_ratio)
    for info in infos:
        try:
            declared.count_member()
            parts = member_parts(info.orig_filename)  # zipfile cuts names at NUL
            _check_zip_type(info, budget)
            declared.count_bytes(info.file_size)
        except _Unsafe as exc:
            raise budget.unsafe(info.orig_filename, str(exc)) from None
        checked.append((info, parts))
    return checked


def _check_zip_type(info: zipfile.ZipInfo, budget: _Budget) -> None:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise _Unsafe("symbolic links are not extracted")
    if kind in (stat.S_IFCHR, stat.S_IFBLK):
        raise _Unsafe("device nodes are not extracted")
    if kind == stat.S_IFIFO:
        raise _Unsafe("fifos are not extracted")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _Unsafe(f"file type {oct(kind)} is not extracted")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_FLOOR_BYTES and ratio > budget.max_ratio:
        raise _Unsafe(f"compression ratio {ratio:.0f} exceeds {budget.max_ratio:g}")


def _extract_zip_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    parts: tuple[str, ...],
    staging: Path,
    budget: _Budget,
) -> None:
    dest = staging.joinpath(*parts)
    if info.is_dir():
        _make_dir(dest)
        return
    if not parts:
        raise _Unsafe("a file member without a name")
    mode = stat.S_IMODE(info.external_attr >> 16) or 0o644
    with zf.open(info) as source:
        _write_file(source, dest, mode, budget)
    _set_mtime(dest, time.mktime((*info.date_time, 0, 0, -1)))


def _make_dir(dest: Path) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _Unsafe("conflicts with a file of the same name") from None


def _write_file(source: IO[bytes], dest: Path, mode: int, budget: _Budget) -> None:
    """Stream one member into a new file; never follows or replaces an existing entry."""
    _make_dir(dest.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(dest, flags, (mode & 0o777) | 0o600)
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise _Unsafe("appears twice or conflicts with another member") from None
    with open(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            budget.count_bytes(len(chunk))
            out.write(chunk)


def _set_mtime(dest: Path, mtime: float) -> None:
    try:
        os.utime(dest, (mtime, mtime))
    except (OverflowError, ValueError, OSError):
        pass  # a bogus timestamp in the archive is not worth failing for


def _promote(staging: Path, target: Path, tops: list[str]) -> list[Path]:
    """Move the extracted tree into place: one rename, or entry by entry."""
    try:
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():
            raise StagingError(f"cannot extract into {target}: it is not a folder") from None
        for top in tops:
            _remove(target / top)
            os.replace(staging / top, target / top)
    return [target / top for top in tops]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
