"""The local worker process: one job at a time, reporting to the head over a pipe.

It speaks the messages of :mod:`cryoflow.workers.wire`. The job runs in the main
thread; a reader thread takes messages from the head, so a cancel reaches a busy job,
and sends ``started`` for a job that runs a while without saying anything. The process
leads its own process group (a kill of the group takes the job's children), dies with
the head (``PR_SET_PDEATHSIG``), and turns its stdout and stderr (children's included)
into the running job's log lines (:mod:`cryoflow.workers.capture`), capped at
:data:`LOG_CAP_BYTES` per job.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryoflow.graph.model import Outcome
from cryoflow.workers.base import JobResult, Task
from cryoflow.workers.capture import OutputCapture
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.runtime import run_task
from cryoflow.workers.wire import FLUSH_S, Outbox, decode_task, encode, finished_message

LOG_CAP_BYTES = 1 << 20
"""Log text (``worker.log`` and captured output) forwarded per job; the rest is counted."""
_PR_SET_PDEATHSIG = 1


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
        self._cancelled_ahead: set[str] = set()
        """Queued jobs cancelled before they started: they end at once, unrun."""
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
        with self._lock:
            skip = task.id in self._cancelled_ahead
            self._cancelled_ahead.discard(task.id)
        if skip:
            result = JobResult(Outcome.CANCEL, error="cancelled before it started")
            self._outbox.send(finished_message(task.id, result, announce=True))
            return
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
        elif op == "tasks":
            for task in message.get("tasks") or []:
                self._take(task)
        elif op is None:
            self._take(message)

    def _take(self, message: dict[str, Any]) -> None:
        """Queue one task to run, or answer one that cannot be read with a failure."""
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
            elif job_id is not None:
                self._cancelled_ahead.add(job_id)

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


def start_worker_process(
    name: str, env: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], Connection]:
    """Start a worker process in its own session; return it and the head's end of its pipe.

    A fresh interpreter (fork and exec, so the caller is never copied, and unlike
    ``multiprocessing``'s spawn the caller's ``__main__`` is not run again) with
    ``env`` added to this process's environment.
    """
    parent_sock, child_sock = socket.socketpair()
    environment = {**os.environ, **env}
    package_root = str(Path(__file__).resolve().parents[2])
    path = [package_root, environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    command = [sys.executable, "-m", "cryoflow.workers.process", str(child_sock.fileno())]
    command += [name, str(os.getpid())]
    with child_sock:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            pass_fds=(child_sock.fileno(),),
            start_new_session=True,
            env=environment,
        )
    return process, Connection(parent_sock.detach())


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
