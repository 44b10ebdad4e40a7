"""``CryoCloud.Common.directorywatcher.DirectoryWatcher``: a polling folder watcher.

A thread that scans ``target`` every ``interval`` seconds and calls ``onAdd(info)``
once for each file whose size and mtime stayed the same for ``stabilize`` seconds
(``info``: ``fullpath``, ``relpath``, ``datasize``, ``mtime``). Files already there
when it starts are offered too. It keeps no database: a restarted watcher offers every
file again (cryoflow's own ``dirwatcher`` input remembers what it offered).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

Info = dict[str, Any]


class DirectoryWatcher(threading.Thread):
    def __init__(
        self,
        runid: Any,
        target: str,
        onAdd: Callable[[Info], Any] | None = None,  # noqa: N803 - CryoCloud's names
        onModify: Callable[[Info], Any] | None = None,  # noqa: N803
        onRemove: Callable[[Info], Any] | None = None,  # noqa: N803
        onError: Callable[[Info], Any] | None = None,  # noqa: N803
        recursive: bool = False,
        stabilize: float = 1.0,
        noDB: bool = True,  # noqa: N803
        interval: float = 0.25,
        stop_event: threading.Event | None = None,
        **_ignored: Any,
    ) -> None:
        super().__init__(name=f"directorywatcher-{runid}", daemon=True)
        if not os.path.isdir(target):
            raise FileNotFoundError(f"cannot watch {target!r}: it is not a folder")
        self.target = os.path.abspath(target)
        self.on_add = onAdd
        self.recursive = bool(recursive)
        self.stabilize = float(stabilize)
        self.interval = interval
        self._stop_event = threading.Event()
        self._outer_stop = stop_event
        self._seen: dict[str, tuple[int, float, float]] = {}
        self._done: set[tuple[str, int, float]] = set()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if self._outer_stop is not None and self._outer_stop.is_set():
                return
            self.scan(time.monotonic())
            self._stop_event.wait(self.interval)

    def scan(self, now: float) -> None:
        """One pass: note changes, offer files that have settled."""
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_size, st.st_mtime)
            seen = self._seen.get(path)
            if seen is None or seen[:2] != key:
                self._seen[path] = (st.st_size, st.st_mtime, now)
                continue
            if now - seen[2] >= self.stabilize and (path, *key) not in self._done:
                self._done.add((path, *key))
                if self.on_add is not None:
                    self.on_add({"fullpath": path, "relpath": os.path.relpath(path, self.target),
                                 "datasize": st.st_size, "mtime": st.st_mtime})

    def _files(self) -> Iterator[str]:
        if not self.recursive:
            for entry in sorted(os.scandir(self.target), key=lambda e: e.name):
                if entry.is_file() and not entry.name.startswith("."):
                    yield entry.path
            return
        for root, dirs, files in os.walk(self.target):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            yield from (os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
