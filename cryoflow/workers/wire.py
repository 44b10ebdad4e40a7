"""The JSON messages between the head and a local worker process (never pickle).

One message per ``send_bytes`` on a :class:`multiprocessing.connection.Connection`:

- head → worker: a :class:`Task` as a JSON object of its fields that differ from their
  defaults (no ``op`` key), several as ``{"op": "tasks", "tasks": [...]}`` (run in that
  order), or ``{"op": "cancel", "job_id"}``. Closing the pipe asks
  the worker to exit.
- worker → head: ``{"op": "ready", "pid"}`` once; per job ``{"op": "started",
  "job_id", "worker", "host", "pid"}`` and ``{"op": "finished", "job_id", "outcome",
  "retval", "error", "stats", "announce"}``; in between ``{"op": "status", "job_id",
  "key", "value"}`` and ``{"op": "log", "job_id", "level", "message"}``, which may
  come coalesced as ``{"op": "batch", "messages": [...]}`` but never later than about
  twice :data:`FLUSH_S` after they were produced.

``started`` is sent before the job's first status or log message, or once the job has
run for up to ``FLUSH_S``, whichever comes first. A job that ends sooner sends only
``finished`` with ``"announce": true``: the head reports the start from it (with
``stats["worker"]`` and ``stats["node"]``), so a trivial job costs one message each way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import PurePath
from typing import Any

from cryoflow.workers.base import JobResult, Task

FLUSH_S = 0.05
"""Status and log messages wait at most about this long to be coalesced."""


def json_default(value: Any) -> Any:
    """Make common non-JSON values JSON-friendly (mappings, sets, paths, numpy scalars)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, PurePath):
        return str(value)
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    return str(value)


_ENCODER = json.JSONEncoder(default=json_default, separators=(",", ":"))


def encode(message: Mapping[str, Any]) -> bytes:
    """One wire message as compact UTF-8 JSON."""
    return _ENCODER.encode(message).encode()


def encode_task(task: Task) -> bytes:
    """A task as sent to a worker: a JSON object of its fields that differ from defaults."""
    return encode(task.to_dict())


def encode_tasks(tasks: list[Task]) -> bytes:
    """One task as :func:`encode_task`, several as ``{"op": "tasks", "tasks": [...]}``."""
    if len(tasks) == 1:
        return encode_task(tasks[0])
    return encode({"op": "tasks", "tasks": [task.to_dict() for task in tasks]})


def decode_task(data: dict[str, Any]) -> Task:
    """The inverse of :func:`encode_task`, from the parsed JSON object."""
    return Task.from_dict(data)


def finished_message(job_id: str, result: JobResult, *, announce: bool = False) -> bytes:
    """The ``finished`` message; a result that cannot be encoded becomes an error."""
    message = {
        "op": "finished",
        "job_id": job_id,
        "outcome": result.outcome.value,
        "retval": result.retval,
        "error": result.error,
        "stats": result.stats,
        "announce": announce,
    }
    try:
        return encode(message)
    except (ValueError, TypeError, RecursionError) as exc:
        message.update(outcome="error", retval=None, error=f"result is not JSON: {exc}")
        return encode(message)


class Outbox:
    """Sends messages to the head under one lock, coalescing status and log messages.

    :meth:`send` flushes what is pending first, so a job's status and log messages
    always reach the head before its ``finished`` message. :meth:`post` queues a
    status/log message and sends the queue when nothing was sent for ``FLUSH_S``;
    :meth:`flush_stale` (called by the reader thread every ``FLUSH_S``) sends the rest.
    A status key set again before it was sent only keeps its latest value.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._pending: dict[Any, dict[str, Any]] = {}
        self._last = 0.0
        self._seq = 0
        self.closed = False

    def send(self, data: bytes) -> None:
        with self._lock:
            self._flush()
            self._send(data)

    def post(self, message: dict[str, Any], key: Any = None) -> None:
        with self._lock:
            if key is None:
                self._seq += 1
                key = self._seq
            self._pending[key] = message
            if time.monotonic() - self._last >= FLUSH_S:
                self._flush()

    def flush_stale(self) -> None:
        with self._lock:
            if self._pending and time.monotonic() - self._last >= FLUSH_S:
                self._flush()

    def _flush(self) -> None:
        self._last = time.monotonic()
        if not self._pending:
            return
        messages = list(self._pending.values())
        self._pending.clear()
        if len(messages) == 1:
            self._send(encode(messages[0]))
        else:
            self._send(encode({"op": "batch", "messages": messages}))

    def _send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._conn.send_bytes(data)
        except OSError:
            self.closed = True  # the head is gone or stopping; nobody reads any more
