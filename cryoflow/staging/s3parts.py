"""The parts of S3 transfers that need no S3: part sizes, ETag arithmetic, file ranges.

Kept apart from :mod:`cryoflow.staging.s3` so the client code reads as requests and
error handling, and these pieces can be tested without a server.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryoflow.errors import StagingError, TransientStagingError
from cryoflow.staging.retry import local_write_error

MIN_PART_BYTES = 5 << 20
MAX_PARTS = 10_000
CHUNK = 1 << 20


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives an object uploaded in these parts (their raw MD5 digests)."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def part_size_for(size: int, part_bytes: int) -> int:
    """The part size for an object of ``size`` bytes: ≥ 5 MiB and at most 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(part_bytes, MIN_PART_BYTES, needed)


def ranges(size: int, step: int) -> list[tuple[int, int]]:
    """``(offset, length)`` pairs covering ``size`` bytes in ``step``-sized pieces."""
    return [(start, min(step, size - start)) for start in range(0, size, step)]


class PartPool(ThreadPoolExecutor):
    """A thread pool that, when its block fails, tells running parts to stop."""

    def __init__(self, workers: int, stop: threading.Event) -> None:
        super().__init__(max_workers=max(1, workers), thread_name_prefix="cryoflow-s3")
        self.stop = stop

    def __exit__(self, *exc_info: Any) -> bool | None:
        if exc_info[0] is not None:
            self.stop.set()
            self.shutdown(wait=True, cancel_futures=True)
        return super().__exit__(*exc_info)


class EtagHasher:
    """Checks bytes against an S3 ETag: the MD5 of the whole, or of each part's MD5.

    Inactive (checks nothing) without an ETag, for an ETag that is not MD5-based, and
    for a multipart ETag whose part size is unknown.
    """

    def __init__(self, announced: str | None, part_bytes: int | None = None) -> None:
        digest, _, parts = (announced or "").partition("-")
        self.announced = announced or ""
        self.active = len(digest) == 32 and (not parts or bool(part_bytes))
        self.part_bytes = part_bytes if parts else None
        self.whole = hashlib.md5()
        self.part = hashlib.md5()
        self.part_fill = 0
        self.parts: list[bytes] = []

    def update(self, data: bytes | memoryview) -> None:
        if not self.active:
            return
        if not self.part_bytes:
            self.whole.update(data)
            return
        view = memoryview(data)
        while view:
            take = min(len(view), self.part_bytes - self.part_fill)
            self.part.update(view[:take])
            self.part_fill += take
            view = view[take:]
            if self.part_fill == self.part_bytes:
                self._close_part()

    def add_part(self, digest: bytes) -> None:
        """The MD5 of the next whole part, taken elsewhere."""
        self.parts.append(digest)

    def _close_part(self) -> None:
        self.parts.append(self.part.digest())
        self.part, self.part_fill = hashlib.md5(), 0

    def matches(self) -> bool:
        """False only when the bytes seen do not give the announced ETag."""
        if not self.active:
            return True
        if not self.part_bytes:
            return self.whole.hexdigest() == self.announced
        if self.part_fill:
            self._close_part()
        return multipart_etag(self.parts) == self.announced


def drain(
    body: Any,
    fd: int,
    offset: int,
    update: Callable[[bytes], None] | None,
    stop: threading.Event | None = None,
) -> int:
    """Write a streaming body at ``offset`` in 1 MiB reads; return the end offset."""
    try:
        for chunk in iter(lambda: body.read(CHUNK), b""):
            if stop is not None and stop.is_set():
                raise TransientStagingError("download stopped")
            write_at(fd, chunk, offset)
            if update is not None:
                update(chunk)
            offset += len(chunk)
    finally:
        body.close()
    return offset


def write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    except OSError as exc:
        raise local_write_error(exc, "an S3 object") from exc


FLUSH_BYTES = 64 << 20


def flush_behind(fd: int, unsynced: int) -> int:
    """Write finished ranges to disk while later ones still download, so the final
    ``fsync`` before the rename has little left to do; returns the bytes not yet synced."""
    if unsynced < FLUSH_BYTES:
        return unsynced
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise local_write_error(exc, "an S3 object") from exc
    return 0


def hash_from_file(fd: int, offset: int, length: int, hasher: EtagHasher) -> None:
    end = offset + length
    while offset < end:
        data = os.pread(fd, min(CHUNK, end - offset), offset)
        if not data:
            raise TransientStagingError("the staging file is shorter than what was written")
        hasher.update(data)
        offset += len(data)


class FileRange:
    """A seekable, read-only view of ``length`` bytes of ``path`` from ``offset``.

    A part is streamed from the file as it is sent, never held in memory whole. The MD5
    of what was read since the last rewind is kept, so the server's ETag for the part
    can be checked without reading the file twice.
    """

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self._file = open(path, "rb")
        self.offset, self.length, self._pos = offset, length, 0
        self._file.seek(offset)
        self._digest: Any = hashlib.md5()

    def read(self, size: int | None = -1) -> bytes:
        left = self.length - self._pos
        data = self._file.read(left if size is None or size < 0 else min(size, left))
        if size and not data and left:
            raise StagingError(f"{self._file.name} changed while it was uploaded")
        if self._digest is not None:
            self._digest.update(data)
        self._pos += len(data)
        return data

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.length}[whence]
        target = max(0, min(self.length, base + position))
        if target != self._pos:
            self._digest = hashlib.md5() if target == 0 else None
        self._pos = target
        self._file.seek(self.offset + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def sent_md5(self) -> str | None:
        """Hex MD5 of the whole range when it was read through once in order, else None."""
        if self._digest is None or self._pos != self.length:
            return None
        return str(self._digest.hexdigest())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FileRange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def damaged(reply: dict[str, Any], sent_md5: str | None) -> str | None:
    """The server's ETag when it shows the bytes it stored are not the bytes sent.

    Only plain MD5 ETags are compared: not those of SSE-KMS or SSE-C objects.
    """
    etag = str(reply.get("ETag", "")).strip('"')
    encrypted = str(reply.get("ServerSideEncryption", "")).startswith("aws:kms")
    if not sent_md5 or encrypted or reply.get("SSECustomerAlgorithm") or len(etag) != 32:
        return None
    return etag if etag != sent_md5 else None
