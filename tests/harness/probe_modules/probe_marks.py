"""Execution markers shared by the probe modules (a sibling import, not a module).

Every probe execution creates ``exec/<job>/<attempt>-<pid>-<nonce>`` under its
``ledger_dir`` when it starts and ``done/<job>/<attempt>-<pid>-<nonce>`` when it ends.
``<job>`` is the job id without its ``#attempt`` suffix, quoted so that it is one path
component. Both are created with ``O_CREAT|O_EXCL``, so a second creation of the same
name fails instead of overwriting, and a run cut short leaves its ``exec`` marker
without a ``done`` one. The marker holds a small JSON record with the wall time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote


def job_key(job_id: str) -> tuple[str, int]:
    """``"12/Hash#2"`` → ``("12/Hash", 2)``."""
    key, _, attempt = job_id.rpartition("#")
    if not key or not attempt.isdigit():
        return job_id, 1
    return key, int(attempt)


def create_exclusive(path: Path, record: dict[str, Any]) -> bool:
    """Create ``path`` holding ``record``; False when it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(record).encode())
    finally:
        os.close(fd)
    return True


class Execution:
    """One run of a probe: writes ``exec`` now and ``done`` on :meth:`finish`."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.ledger = Path(task["args"]["ledger_dir"])
        self.job_id = str(task["id"])
        self.key, self.attempt = job_key(self.job_id)
        self.pebble = task.get("pebble_id")
        self.node = task.get("node")
        self.name = f"{self.attempt}-{os.getpid()}-{os.urandom(4).hex()}"
        self.record = {"job_id": self.job_id, "pebble": self.pebble, "node": self.node,
                       "attempt": self.attempt, "pid": os.getpid(), "t": time.time()}
        create_exclusive(self._path("exec"), self.record)

    def _path(self, kind: str) -> Path:
        return self.ledger / kind / quote(self.key, safe="") / self.name

    def finish(self, **extra: Any) -> None:
        """Write the ``done`` marker (the job's work is complete)."""
        create_exclusive(self._path("done"), {**self.record, **extra, "t_done": time.time()})
