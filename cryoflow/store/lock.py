"""The single-head lock on a state folder.

Contract: :meth:`StateLock.acquire` takes an exclusive ``fcntl.flock`` on
``<state_dir>/lock`` without waiting and writes the holder's pid into the file. A second
holder (another process, or another ``acquire`` in the same process) gets
:class:`StoreLockedError` naming that pid. The kernel drops the lock when the holder's
last copy of the descriptor closes, so a head killed with SIGKILL needs no manual unlock.
The descriptor is close-on-exec; a process that forks children without exec passes the
lock on to them until they exit.

The lock file itself is never removed: removing it would let two heads lock two
different files of the same name.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from cryoflow.errors import StoreError, StoreLockedError

LOCK_NAME = "lock"


class StateLock:
    """An exclusive lock on one state folder, held until :meth:`release`."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Lock ``state_dir`` or raise :class:`StoreLockedError` naming the holder."""
        path = state_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open the lock file {path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = _read_pid(fd)
            os.close(fd)
            raise StoreLockedError(_locked_message(state_dir, holder)) from e
        except OSError as e:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {e.strerror}") from e
        _write_pid(fd)
        return cls(fd, path)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up; calling it again does nothing."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def _locked_message(state_dir: Path, pid: int | None) -> str:
    holder = f"pid {pid}" if pid is not None else "another process"
    return (
        f"state folder {state_dir} is locked by {holder} (another ccworkflow is running "
        "there); stop it, or pick another folder with --state"
    )
