"""The local worker process: one job at a time, reporting to the head over a pipe.

Wire protocol (JSON only, never pickle), one message per ``send_bytes``:

- head → worker: a :class:`Task` as a JSON object (no ``op`` key), or
  ``{"op": "cancel", "job_id"}``. Closing the pipe asks the worker to exit.
- worker → head: ``{"op": "ready", "pid"}`` once; per job ``{"op": "started",
  "job_id", "worker", "host", "pid"}`` and ``{"op": "finished", "job_id", "outcome",
  "retval", "error", "stats", "announce"}``; in between ``{"op": "status", "job_id",
  "key", "value"}`` and ``{"op": "log", "job_id", "level", "message"}``, which may
  come coalesced as ``{"op": "batch", "messages": [...]}`` but never later than about
  :data:`FLUSH_S` twice after they were produced.

``started`` is sent before the job's first status or log message, or by the reader
thread once the job has run for up to ``FLUSH_S``, whichever comes first. A job that
ends sooner sends only ``finished`` with ``"announce": true``: the head reports the
start from it (with ``stats["worker"]`` and ``stats["node"]``), so a trivial job costs
one message each way.

The job runs in the main thread; a reader thread takes messages from the head, so a
cancel reaches a busy job. The process leads its own process group (a kill of the
group takes the job's children), dies with the head (``PR_SET_PDEATHSIG``), and sends
its stdout and stderr (children's included) as the running job's log lines, capped at
:data:`LOG_CAP_BYTES` per job.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import queue
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import PurePath
from typing import Any

from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import JobResult, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.runtime import run_task

FLUSH_S = 0.05
"""Status and log messages wait at most about this long to be coalesced."""
LOG_CAP_BYTES = 1 << 20
"""Log text (``worker.log`` and captured output) forwarded per job; the rest is counted."""
_PR_SET_PDEATHSIG = 1


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


_TASK_FIELDS = tuple((f.name, _default_of(f)) for f in dataclasses.fields(Task))


# Encoding


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
    fields = {}
    for name, default in _TASK_FIELDS:
        value = getattr(task, name)
        if default is dataclasses.MISSING or value != default:
            fields[name] = value
    return encode(fields)


def decode_task(data: dict[str, Any]) -> Task:
    """The inverse of :func:`encode_task`, from the parsed JSON object."""
    if "worker_class" in data:
        data["worker_class"] = WorkerClass(data["worker_class"])
    for name in ("post", "module_paths"):
        if name in data:
            data[name] = tuple(data[name])
    if "volumes" in data:
        data["volumes"] = tuple(tuple(v) for v in data["volumes"])
    return Task(**data)


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


# Sending


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


# Output capture


class OutputCapture:
    """Turns this process's stdout/stderr (file descriptors 1 and 2) into log lines.

    Output written while a job runs is handed to ``publish(level, text)`` line by line
    (stdout as INFO, stderr as WARNING); output between jobs goes to the original
    stderr. :meth:`end_job` drains what the job wrote before it returned.
    """

    def __init__(self, publish: Callable[[str, str], None]) -> None:
        self._publish = publish
        self._lock = threading.Lock()
        self._active = False
        self._probe = select.poll()
        self.original_stderr = os.dup(2)
        self._pipes: dict[int, tuple[str, bytearray]] = {}
        for fd, level in ((1, "INFO"), (2, "WARNING")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            os.set_blocking(read_end, False)
            self._pipes[read_end] = (level, bytearray())
            self._probe.register(read_end, select.POLLIN)
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True)
        threading.Thread(target=self._pump, name="cryoflow-output", daemon=True).start()

    def begin_job(self) -> None:
        with self._lock:
            self._active = True

    def end_job(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        with self._lock:
            for fd, _ in self._probe.poll(0):
                self._drain(fd)
            for level, partial in self._pipes.values():
                if partial:
                    self._emit(level, bytes(partial))
                    partial.clear()
            self._active = False

    def _pump(self) -> None:
        poller = select.poll()
        for fd in self._pipes:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                with self._lock:
                    self._drain(fd)

    def _drain(self, fd: int) -> None:
        level, partial = self._pipes[fd]
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            partial += chunk
            cut = partial.rfind(b"\n") + 1 if len(partial) < 1 << 16 else len(partial)
            self._emit(level, bytes(partial[:cut]))
            del partial[:cut]

    def _emit(self, level: str, data: bytes) -> None:
        if not data:
            return
        if self._active:
            self._publish(level, data.decode(errors="replace").rstrip("\n"))
        else:
            os.write(self.original_stderr, data)


# The worker


class WorkerProcess:
    """The loop of one worker process: receive tasks, run them, report.

    Started by :class:`~cryoflow.workers.local.LocalExecutor` as ``python -m
    cryoflow.workers.process FD NAME HEAD_PID``, FD being its end of a socket pair.
    """

    def __init__(self, conn: Connection, name: str, head_pid: int) -> None:
        self._conn = conn
        self._head_pid = head_pid
        self._outbox = Outbox(conn)
        self._jobs: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._current: tuple[str, threading.Event] | None = None
        self._announced = True
        self._log_bytes = 0
        self._dropped = 0
        self._handle = WorkerHandle(name, on_status=self._status, on_log=self._log)
        self._capture = OutputCapture(self._output)

    def serve(self) -> None:
        """Run jobs until the head closes the pipe (or dies)."""
        threading.Thread(target=self._read, name="cryoflow-reader", daemon=True).start()
        self._outbox.send(encode({"op": "ready", "pid": os.getpid()}))
        while not self._outbox.closed and (task := self._jobs.get()) is not None:
            self._run(task)

    def _run(self, task: Task) -> None:
        cancel = threading.Event()
        with self._lock:
            self._current, self._announced = (task.id, cancel), False
        self._log_bytes = self._dropped = 0
        os.environ["CRYOFLOW_JOB_ID"] = task.id
        self._capture.begin_job()
        try:
            result = run_task(task, self._handle, cancel)
        finally:
            self._capture.end_job()
            os.environ.pop("CRYOFLOW_JOB_ID", None)
        if self._dropped:
            self._post_log(task.id, "WARNING", f"{self._dropped} bytes of log output dropped")
        with self._lock:
            announce, self._announced, self._current = not self._announced, True, None
        self._outbox.send(finished_message(task.id, result, announce=announce))

    def report_crash(self) -> None:
        """Write the current exception to the original stderr (the capture dies with us)."""
        os.write(self._capture.original_stderr, traceback.format_exc().encode())

    def _announce(self) -> None:
        """Send the running job's ``started`` message unless it went out already.

        The send happens under the job lock, so it cannot overtake ``finished``.
        """
        with self._lock:
            if self._current is None or self._announced:
                return
            self._announced = True
            handle, job_id = self._handle, self._current[0]
            message: dict[str, Any] = {"op": "started", "job_id": job_id}
            message.update(worker=handle.name, host=handle.host, pid=os.getpid())
            self._outbox.send(encode(message))

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self._conn.fileno(), select.POLLIN)
        try:
            while True:
                if poller.poll(FLUSH_S * 1000):
                    self._handle_message(json.loads(self._conn.recv_bytes()))
                else:
                    self._announce()
                self._outbox.flush_stale()
        except (EOFError, OSError):
            pass
        self._on_head_gone()

    def _handle_message(self, message: dict[str, Any]) -> None:
        op = message.pop("op", None)
        if op == "cancel":
            self._cancel(message.get("job_id"))
        elif op is None:
            try:
                self._jobs.put(decode_task(dict(message)))
            except (TypeError, ValueError) as exc:
                self._refuse(message, exc)

    def _refuse(self, message: dict[str, Any], exc: Exception) -> None:
        """Answer a task this worker cannot read with a failed result (not silence)."""
        job_id = str(message.get("id", ""))
        error = f"the worker could not read the task: {type(exc).__name__}: {exc}"
        result = JobResult(Outcome.ERROR, error=error, stats={"worker": self._handle.name})
        self._outbox.send(finished_message(job_id, result, announce=True))

    def _cancel(self, job_id: str | None) -> None:
        with self._lock:
            if self._current and job_id in (None, self._current[0]):
                self._current[1].set()

    def _on_head_gone(self) -> None:
        """The pipe closed: stop the running job and exit; kill everything if orphaned."""
        if os.getppid() != self._head_pid:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        self._cancel(None)
        self._jobs.put(None)

    def _status(self, job_id: str, key: str, value: Any) -> None:
        if not self._announced:
            self._announce()
        message = {"op": "status", "job_id": job_id, "key": key, "value": value}
        self._outbox.post(message, key=("status", job_id, key))

    def _log(self, job_id: str, level: str, message: str) -> None:
        if self._log_bytes + len(message) > LOG_CAP_BYTES:
            self._dropped += len(message)
            return
        self._log_bytes += len(message)
        self._post_log(job_id, level, message)

    def _post_log(self, job_id: str, level: str, message: str) -> None:
        if not self._announced:
            self._announce()
        self._outbox.post({"op": "log", "job_id": job_id, "level": level, "message": message})

    def _output(self, level: str, text: str) -> None:
        current = self._current
        if current is not None:
            self._log(current[0], level, text)


# Process set-up


def _die_with_parent(head_pid: int) -> None:
    """Own process group; SIGTERM when the head dies, answered by killing the group.

    PDEATHSIG is SIGTERM rather than SIGKILL so that the handler can take the job's
    children down with the worker; a SIGTERM while the head lives (the head killing a
    job) keeps its default meaning.
    """
    try:
        os.setsid()
    except OSError:
        pass  # already a group leader
    signal.signal(signal.SIGTERM, lambda signum, frame: _on_sigterm(head_pid))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != head_pid:
        os.killpg(os.getpgid(0), signal.SIGKILL)


def _on_sigterm(head_pid: int) -> None:
    if os.getppid() != head_pid:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def main(conn: Connection, name: str, head_pid: int) -> None:
    """Serve the head on ``conn`` until it closes the pipe (or dies)."""
    _die_with_parent(head_pid)
    worker = WorkerProcess(conn, name, head_pid)
    try:
        worker.serve()
    except BaseException:
        worker.report_crash()
        raise
    finally:
        conn.close()


if __name__ == "__main__":  # python -m cryoflow.workers.process FD NAME HEAD_PID
    main(Connection(int(sys.argv[1])), sys.argv[2], int(sys.argv[3]))
