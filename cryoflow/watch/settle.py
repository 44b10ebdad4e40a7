"""Which watched files (or folders) have settled: a pure tracker, time passed in.

Contract:

- Feed :meth:`SettleTracker.observe` a probe of a path (its size, ``mtime_ns`` and
  inode, the *version*) and ``now``. The first probe of a path, a probe that finds a
  different version, and a probe marked ``touched`` (an event said the path was written
  to, created or renamed into place) all restart the path's clock.
- A path **settles** once a probe finds the same version at least ``stabilize_s`` after
  its clock started. :meth:`due` names the paths whose clock has run out and that need
  that confirming probe; :meth:`settled` hands over (and forgets) the confirmed ones in
  the order they settled. A file that keeps changing never settles.
- :meth:`forget` drops a path (deleted or renamed away): it never settles.
- Nothing here reads the disk or a clock; every method is O(log n) or better per path.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True)
class Version:
    """What a probe saw of a path; a change in any field is a new version."""

    size: int  #: bytes (for a folder: the bytes of every file below it)
    mtime_ns: int  #: modification time (for a folder: the newest below it)
    inode: int  #: inode number (a file replaced by a rename gets a new one)


@dataclass(frozen=True)
class Settled:
    """A path whose version stayed the same for the quiet period."""

    path: str
    version: Version
    isdir: bool = False


@dataclass
class _Entry:
    version: Version
    isdir: bool
    deadline: float  #: when the clock runs out: last restart + ``stabilize_s``
    ticket: int | None  #: the heap item that stands for this entry, None when popped


class SettleTracker:
    """Tracks unsettled paths; see the module contract.

    The heap holds at most one item per path: restarting a clock only moves the
    entry's deadline, and an item popped before the deadline is pushed back once.
    """

    def __init__(self, stabilize_s: float) -> None:
        if stabilize_s < 0:
            raise ValueError(f"stabilize_s must be 0 or more, not {stabilize_s}")
        self.stabilize_s = float(stabilize_s)
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._tickets = 0
        self._ready: list[Settled] = []

    def __len__(self) -> int:
        """Paths tracked and not yet settled."""
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def observe(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        inode: int,
        now: float,
        *,
        isdir: bool = False,
        touched: bool = False,
    ) -> None:
        """Record a probe of ``path`` taken at ``now`` (see the module contract)."""
        version = Version(size, mtime_ns, inode)
        entry = self._entries.get(path)
        if entry is None:
            self._entries[path] = _Entry(version, isdir, now + self.stabilize_s, None)
            self._push(path)
        elif touched or entry.version != version or entry.isdir != isdir:
            entry.version, entry.isdir = version, isdir
            self._restart(path, entry, now)
        elif now >= entry.deadline:
            del self._entries[path]
            self._ready.append(Settled(path, version, isdir))
        elif entry.ticket is None:
            self._push(path)  # probed early: wait for the deadline again

    def touch(self, path: str, now: float) -> bool:
        """Restart the clock of a tracked path; False when the path is not tracked."""
        entry = self._entries.get(path)
        if entry is None:
            return False
        self._restart(path, entry, now)
        return True

    def forget(self, path: str) -> None:
        """Stop tracking ``path``; it will not settle (unless observed again)."""
        self._entries.pop(path, None)

    def due(self, now: float) -> list[str]:
        """Tracked paths whose clock ran out by ``now``: probe each, then observe it."""
        paths: list[str] = []
        while True:
            deadline = self.next_due()
            if deadline is None or deadline > now:
                return paths
            _, _, path = heapq.heappop(self._heap)
            self._entries[path].ticket = None
            paths.append(path)

    def next_due(self) -> float | None:
        """The earliest time :meth:`due` may name a path, or None when nothing waits."""
        while self._heap:
            deadline, ticket, path = self._heap[0]
            entry = self._entries.get(path)
            if entry is not None and entry.ticket == ticket:
                if entry.deadline == deadline:
                    return deadline
                heapq.heappop(self._heap)
                self._push(path)
            else:
                heapq.heappop(self._heap)
        return None

    def settled(self) -> list[Settled]:
        """Hand over the paths confirmed since the last call, oldest first."""
        ready, self._ready = self._ready, []
        return ready

    def _restart(self, path: str, entry: _Entry, now: float) -> None:
        entry.deadline = now + self.stabilize_s
        if entry.ticket is None:
            self._push(path)

    def _push(self, path: str) -> None:
        entry = self._entries[path]
        self._tickets += 1
        entry.ticket = self._tickets
        heapq.heappush(self._heap, (entry.deadline, self._tickets, path))
