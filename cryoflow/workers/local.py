"""Long-lived local worker processes, driven from the head's asyncio loop.

:class:`LocalExecutor` keeps ``normal``, ``admin`` and ``gpu`` worker processes
(:mod:`cryoflow.workers.process`), each a fresh interpreter started with
``subprocess`` (fork and exec: the head is never forked into a running copy, and unlike
``multiprocessing``'s spawn the head's ``__main__`` is not run again in every worker) in
its own session, talking JSON over a socket pair. Each runs one job at a time and
imports a module once. The head watches every worker's pipe and process with
``loop.add_reader`` (a pidfd on Linux), so there are no threads in the head and every
sink call happens on the loop thread.

Lifecycle of a job: ``submit`` sends the task to an idle worker; its ``finished``
message frees the slot and reaches the sink. A ``timeout_s`` deadline sends a cancel;
``kill_grace_s`` later the worker's process group gets SIGTERM, then SIGKILL, the job
ends ``timeout`` ("timeout after 2s") and a fresh worker takes the slot. ``cancel``
does the same with the grace it is given and ends the job ``cancel``. A worker that
dies mid-job reports ``job_lost`` and is replaced. Workers are recycled between jobs
after ``max_jobs_per_worker`` jobs or above ``max_worker_memory_mb`` of RSS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from cryoflow.errors import WorkerError
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers import wire
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.process import start_worker_process
from cryoflow.workers.procgroup import kill_group, pidfd_of, resident_bytes, wait_groups_gone

log = logging.getLogger(__name__)
_HOST = socket.gethostname()

TERM_TO_KILL_S = 0.25
"""Between SIGTERM and SIGKILL when a worker's process group is killed."""
READY_TIMEOUT_S = 60.0
MAX_BOOT_FAILURES = 3
"""A slot whose fresh worker dies this many times in a row before saying ready is given up."""


@dataclass
class _Slot:
    """A place for one worker process; it keeps its name and GPU across replacements."""

    worker_class: WorkerClass
    name: str
    env: dict[str, str]
    boot_failures: int = 0


@dataclass(eq=False)
class _Worker:
    """The head's view of one worker process."""

    slot: _Slot
    process: subprocess.Popen[bytes]
    conn: Connection
    exit_fd: int | None
    """A pidfd, readable once the process ended; None where pidfds do not exist."""
    ready: asyncio.Future[None] | None = None
    is_ready: bool = False
    job: Task | None = None
    backlog: deque[Task] = field(default_factory=deque)
    """Tasks sent ahead to this worker, to start as soon as ``job`` ends."""
    job_started: float = 0.0
    jobs_done: int = 0
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    timed_out: bool = False
    retiring: bool = False
    exit_seen: bool = False
    kill_report: tuple[str, JobResult] | None = None
    """The result to report once a killed job's process group got its SIGKILL."""
    host: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid


class LocalExecutor:
    """Runs jobs in local worker processes per worker class (see the module docstring).

    ``workers`` defaults to ``os.cpu_count()``; each of the ``gpus`` workers gets its own
    ``CUDA_VISIBLE_DEVICES``; ``env`` is added to every worker's environment.
    ``prefetch`` lets each busy worker hold that many jobs sent ahead, so it never waits
    for the head between short jobs (a job sent ahead may start after a higher-priority
    job queued later; its timeout starts when it starts). Off when recycling by memory.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        admin_workers: int = 1,
        gpus: int = 0,
        max_jobs_per_worker: int = 0,
        max_worker_memory_mb: int = 0,
        kill_grace_s: float = 2.0,
        env: Mapping[str, str] | None = None,
        prefetch: int = 0,
    ) -> None:
        self._counts = {
            WorkerClass.NORMAL: os.cpu_count() or 1 if workers is None else workers,
            WorkerClass.ADMIN: admin_workers,
            WorkerClass.GPU: gpus,
        }
        self._max_jobs = max_jobs_per_worker
        self._max_rss = max_worker_memory_mb * 2**20
        self._grace_s = kill_grace_s
        self._prefetch = 0 if max_worker_memory_mb else prefetch
        self._env = dict(env or {})
        self._idle: dict[WorkerClass, list[_Worker]] = {c: [] for c in WorkerClass}
        self._workers: set[_Worker] = set()
        self._by_job: dict[str, _Worker] = {}
        self._dying: set[_Worker] = set()
        self._sink: JobSink = _NullSink()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._all_exited = asyncio.Event()
        self._psutil: dict[int, Any] = {}

    # Executor interface

    async def start(self, sink: JobSink) -> None:
        """Start every worker and wait until each has said it is ready.

        Raises :class:`WorkerError` (after stopping the others) when one dies first.
        """
        self._sink, self._loop = sink, asyncio.get_running_loop()
        for worker_class, count in self._counts.items():
            for index in range(count):
                env = (
                    {"CUDA_VISIBLE_DEVICES": str(index)} if worker_class is WorkerClass.GPU else {}
                )
                slot = _Slot(worker_class, f"{worker_class.value}-{index}", env)
                self._spawn(slot).ready = self._loop.create_future()
        waiters = [w.ready for w in self._workers if w.ready is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*waiters), READY_TIMEOUT_S)
        except (WorkerError, TimeoutError) as exc:
            for waiter in waiters:
                if waiter.done() and not waiter.cancelled():
                    waiter.exception()  # retrieved: no "never retrieved" noise
            await self.stop(1.0)
            raise WorkerError(f"local workers did not start: {exc}") from exc

    def free_slots(self) -> Mapping[WorkerClass, int]:
        """Idle workers, plus room to send busy workers their next job ahead of time."""
        free = {c: len(idle) for c, idle in self._idle.items()}
        if self._prefetch:
            for worker in self._workers:
                if worker.job is not None and self._can_take_ahead(worker):
                    free[worker.slot.worker_class] += self._prefetch - len(worker.backlog)
        return free

    @property
    def prefetch(self) -> int:
        """How many jobs a busy worker may hold sent ahead (0: none)."""
        return self._prefetch

    def slots(self) -> Mapping[WorkerClass, tuple[int, int]]:
        """Per class: ``(idle, ahead)``. ``idle`` jobs submitted now start at once; up to
        ``ahead`` more may follow them, sent ahead to workers that are (or then become)
        busy. Submit the ones to start at once first."""
        found = {}
        for worker_class, idle in self._idle.items():
            ahead = 0
            if self._prefetch:
                for worker in self._workers:
                    if worker.slot.worker_class is worker_class and (
                            worker.job is not None or worker in idle):
                        ahead += self._room_ahead(worker)
            found[worker_class] = (len(idle), ahead)
        return found

    def _room_ahead(self, worker: _Worker) -> int:
        """How many jobs ``worker`` may still be sent ahead of the job it runs (or, when
        idle, of the job it is about to be given): the rule of :meth:`_can_take_ahead`."""
        if worker.retiring or worker.exit_seen:
            return 0
        room = 0
        while len(worker.backlog) + room < self._prefetch and not (
                self._max_jobs
                and worker.jobs_done + 1 + len(worker.backlog) + room >= self._max_jobs):
            room += 1
        return room

    def _can_take_ahead(self, worker: _Worker) -> bool:
        """May ``worker`` be sent a job before its current one ends?

        Not while it retires, and not when it will be recycled before reaching it.
        """
        if worker.retiring or worker.exit_seen or len(worker.backlog) >= self._prefetch:
            return False
        upcoming = worker.jobs_done + 1 + len(worker.backlog)
        return not (self._max_jobs and upcoming >= self._max_jobs)

    def capacity(self) -> Mapping[WorkerClass, int]:
        return dict(self._counts)

    def submit(self, task: Task) -> None:
        """Hand ``task`` to an idle worker of its class; ValueError if there is none."""
        worker = self._place(task)
        self._send(worker, wire.encode_task(task))

    def submit_many(self, tasks: list[Task]) -> None:
        """:meth:`submit` each task, with one message per worker (tasks to start at once
        first, as :meth:`slots` says)."""
        per_worker: dict[_Worker, list[Task]] = {}
        for task in tasks:
            per_worker.setdefault(self._place(task), []).append(task)
        for worker, given in per_worker.items():
            self._send(worker, wire.encode_tasks(given))

    def _place(self, task: Task) -> _Worker:
        """Give ``task`` to an idle worker, or ahead to a busy one; return that worker."""
        if task.id in self._by_job:
            raise ValueError(f"job {task.id} is already running")
        idle = self._idle[task.worker_class]
        if idle:
            worker = idle.pop()
            self._begin(worker, task)
        else:
            worker = self._ahead_worker(task)
            worker.backlog.append(task)
        self._by_job[task.id] = worker
        return worker

    def _ahead_worker(self, task: Task) -> _Worker:
        """The busy worker of the task's class with the shortest backlog that may take it."""
        busy = [w for w in self._workers if w.slot.worker_class is task.worker_class
                and w.job is not None and self._can_take_ahead(w)]
        if not busy:
            raise ValueError(f"no idle {task.worker_class} worker for job {task.id}")
        return min(busy, key=lambda w: len(w.backlog))

    def _begin(self, worker: _Worker, task: Task) -> None:
        """``task`` is now the job ``worker`` runs; its timeout starts now."""
        worker.job, worker.job_started, worker.timed_out = task, time.time(), False
        if task.timeout_s is not None:
            self._later(worker, task.timeout_s, self._on_deadline, worker, task.id)

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        """Ask the job to stop; kill its worker if it still runs ``grace_s`` later."""
        worker = self._by_job.get(job_id)
        if worker is None or worker.retiring:
            return
        self._send(worker, wire.encode({"op": "cancel", "job_id": job_id}))
        if worker.job is None or worker.job.id != job_id:
            return  # sent ahead: the worker ends it unrun when its turn comes
        error = f"cancelled; the job was killed after a grace of {grace_s:g}s"
        self._later(worker, grace_s, self._kill_job, worker, job_id, Outcome.CANCEL, error)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Close every pipe, wait up to ``timeout_s`` for the workers to exit, then kill.

        Jobs still running are reported lost. No worker process outlives this call.
        """
        self._stopping = True
        groups = {worker.pid for worker in self._workers | self._dying}
        for worker in list(self._dying):
            self._finish_kill(worker)
        for worker in list(self._workers):
            self._cancel_timers(worker)
            self._close_pipe(worker)
        await self._wait_exited(timeout_s)
        for worker in list(self._workers):
            kill_group(worker.pid, signal.SIGTERM)
        await self._wait_exited(TERM_TO_KILL_S)
        for worker in list(self._workers):
            kill_group(worker.pid, signal.SIGKILL)
        await self._wait_exited(5.0)
        for worker in list(self._workers):
            self._on_exit(worker)
            self._finish_kill(worker)  # waits only for a process SIGKILL did not end yet
        await wait_groups_gone(groups, 5.0)

    # Worker processes

    def _spawn(self, slot: _Slot) -> _Worker:
        process, conn = start_worker_process(slot.name, {**self._env, **slot.env})
        worker = _Worker(slot, process, conn, pidfd_of(process.pid))
        assert self._loop is not None
        self._loop.add_reader(conn.fileno(), self._on_readable, worker)
        if worker.exit_fd is not None:
            self._loop.add_reader(worker.exit_fd, self._on_exit, worker)
        self._workers.add(worker)
        self._idle[slot.worker_class].append(worker)
        return worker

    def _on_readable(self, worker: _Worker) -> None:
        """Read every message the worker has sent so far (its results reach the head's
        next commit together)."""
        conn = worker.conn
        try:
            while True:
                self._dispatch(worker, json.loads(conn.recv_bytes()))
                if conn.closed or not conn.poll():
                    return
        except (EOFError, OSError):
            self._close_pipe(worker)
            if worker.exit_fd is None:
                self._on_exit(worker)

    def _dispatch(self, worker: _Worker, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "batch":
            for item in message["messages"]:
                self._dispatch(worker, item)
        elif op == "ready":
            self._on_ready(worker)
        elif worker.job is None or message.get("job_id") != worker.job.id:
            return  # a late message of a job already ended (killed or timed out)
        elif op == "started":
            worker.host = message.get("host", "")
            self._sink.job_started(worker.job.id, message["worker"], worker.host)
        elif op == "status":
            self._sink.job_status(worker.job.id, message["key"], message["value"])
        elif op == "log":
            self._sink.job_log(worker.job.id, message["level"], message["message"])
        elif op == "finished":
            self._on_finished(worker, message)

    def _on_ready(self, worker: _Worker) -> None:
        worker.is_ready = True
        worker.slot.boot_failures = 0
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_result(None)

    def _on_finished(self, worker: _Worker, message: dict[str, Any]) -> None:
        task = self._end_job(worker)
        outcome, error = Outcome(message["outcome"]), message.get("error")
        if worker.timed_out:
            outcome, error = Outcome.TIMEOUT, _timeout_error(task)
        worker.jobs_done += 1
        if worker.backlog:
            self._begin(worker, worker.backlog.popleft())
        elif self._should_recycle(worker):
            self._retire(worker)
            self._spawn(worker.slot)
        else:
            self._idle[worker.slot.worker_class].append(worker)
        stats = message.get("stats") or {}
        if message.get("announce"):
            self._sink.job_started(
                task.id, stats.get("worker", worker.slot.name), stats.get("node", _HOST)
            )
        self._sink.job_finished(task.id, JobResult(outcome, message.get("retval"), error, stats))

    def _end_job(self, worker: _Worker) -> Task:
        task = worker.job
        assert task is not None
        worker.job = None
        self._by_job.pop(task.id, None)
        self._cancel_timers(worker)
        return task

    def _should_recycle(self, worker: _Worker) -> bool:
        if self._max_jobs and worker.jobs_done >= self._max_jobs:
            return True
        return bool(self._max_rss) and resident_bytes(worker.pid, self._psutil) > self._max_rss

    def _on_deadline(self, worker: _Worker, job_id: str) -> None:
        if worker.job is None or worker.job.id != job_id:
            return
        worker.timed_out = True
        self._send(worker, wire.encode({"op": "cancel", "job_id": job_id}))
        error = _timeout_error(worker.job)
        self._later(worker, self._grace_s, self._kill_job, worker, job_id, Outcome.TIMEOUT, error)

    def _kill_job(self, worker: _Worker, job_id: str, outcome: Outcome, error: str) -> None:
        """The job ignored its cancel: kill its worker's group and give the slot a new one.

        SIGTERM now, SIGKILL ``TERM_TO_KILL_S`` later; the job is reported finished only
        then, so no part of it still runs when the head may retry it.
        """
        if worker.job is None or worker.job.id != job_id or worker.retiring:
            return
        task = self._end_job(worker)
        now = time.time()
        stats = {"started": worker.job_started, "finished": now, "worker": worker.slot.name}
        stats.update(runtime=now - worker.job_started, node=worker.host or _HOST)
        worker.kill_report = (task.id, JobResult(outcome, None, error, stats))
        self._retire(worker, kill=True)
        self._dying.add(worker)
        if not self._stopping:
            self._spawn(worker.slot)

    def _finish_kill(self, worker: _Worker) -> None:
        """SIGKILL what is left of a killed job's group, then report the job ended."""
        if worker not in self._dying:
            return
        self._dying.discard(worker)
        if worker.exit_seen:
            self._reap(worker)
        else:
            kill_group(worker.pid, signal.SIGKILL)  # still alive: _on_exit reaps it
        if worker.kill_report is not None:
            job_id, result = worker.kill_report
            worker.kill_report = None
            self._sink.job_finished(job_id, result)

    def _retire(self, worker: _Worker, *, kill: bool = False) -> None:
        """Take a worker out of service; it exits on its own, or is killed."""
        worker.retiring = True
        idle = self._idle[worker.slot.worker_class]
        if worker in idle:
            idle.remove(worker)
        if kill:
            kill_group(worker.pid, signal.SIGTERM)
            assert self._loop is not None
            self._loop.call_later(TERM_TO_KILL_S, self._finish_kill, worker)
        else:
            self._close_pipe(worker)

    def _on_exit(self, worker: _Worker) -> None:
        """The process ended: read what it still sent, then reap it (see :meth:`_reap`).

        A worker being killed for its job is reaped by :meth:`_finish_kill` instead,
        after the grace its group's other processes get between SIGTERM and SIGKILL.
        """
        if worker.exit_seen:
            return
        worker.exit_seen = True
        self._drain(worker)
        self._close_pipe(worker)
        if worker.exit_fd is not None:
            assert self._loop is not None
            self._loop.remove_reader(worker.exit_fd)
            os.close(worker.exit_fd)
        if worker not in self._dying:
            self._reap(worker)

    def _reap(self, worker: _Worker) -> None:
        """Kill what is left in the worker's process group, collect it, replace it if needed.

        The group is killed while the worker is an unreaped zombie, so its pid (the
        group id) cannot have been reused: a job's stray children never outlive it.
        """
        kill_group(worker.pid, signal.SIGKILL)
        worker.process.wait()
        self._workers.discard(worker)
        self._psutil.pop(worker.pid, None)
        if not self._workers:
            self._all_exited.set()
        self._after_exit(worker, _describe_exit(worker))

    def _after_exit(self, worker: _Worker, how: str) -> None:
        idle = self._idle[worker.slot.worker_class]
        if worker in idle:
            idle.remove(worker)
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_exception(WorkerError(f"worker {worker.slot.name} {how}"))
        if worker.job is not None:
            task = self._end_job(worker)
            reason = f"worker {how}"
            if self._stopping:
                reason = f"the executor stopped while the job ran ({reason})"
            self._sink.job_lost(task.id, reason)
        while worker.backlog:
            task = worker.backlog.popleft()
            self._by_job.pop(task.id, None)
            self._sink.job_lost(task.id, f"its worker {how} before the job started")
        if worker.retiring or self._stopping:
            return
        if not worker.is_ready:
            worker.slot.boot_failures += 1
        if worker.slot.boot_failures >= MAX_BOOT_FAILURES:
            log.error("worker %s keeps dying at start (%s); slot given up", worker.slot.name, how)
            return
        self._spawn(worker.slot)

    def _drain(self, worker: _Worker) -> None:
        """Dispatch messages still buffered in a dead worker's pipe."""
        try:
            while not worker.conn.closed and worker.conn.poll():
                self._dispatch(worker, json.loads(worker.conn.recv_bytes()))
        except (EOFError, OSError):
            pass

    def _close_pipe(self, worker: _Worker) -> None:
        if worker.conn.closed:
            return
        assert self._loop is not None
        self._loop.remove_reader(worker.conn.fileno())
        worker.conn.close()

    async def _wait_exited(self, timeout_s: float) -> None:
        if self._workers:
            self._all_exited.clear()
            try:
                await asyncio.wait_for(self._all_exited.wait(), timeout_s)
            except TimeoutError:
                pass

    # Helpers

    def _send(self, worker: _Worker, data: bytes) -> None:
        try:
            worker.conn.send_bytes(data)
        except (OSError, ValueError):
            pass  # the worker is gone; _on_exit reports its job lost

    def _later(self, worker: _Worker, delay: float, callback: Any, *args: Any) -> None:
        assert self._loop is not None
        worker.timers.append(self._loop.call_later(delay, callback, *args))

    def _cancel_timers(self, worker: _Worker) -> None:
        for timer in worker.timers:
            timer.cancel()
        worker.timers.clear()


class _NullSink:
    """Stands in for the sink before ``start``."""

    def job_started(self, job_id: str, worker: str, host: str) -> None: ...

    def job_status(self, job_id: str, key: str, value: Any) -> None: ...

    def job_log(self, job_id: str, level: str, message: str) -> None: ...

    def job_finished(self, job_id: str, result: JobResult) -> None: ...

    def job_lost(self, job_id: str, reason: str) -> None: ...


def _describe_exit(worker: _Worker) -> str:
    code = worker.process.returncode
    if code is not None and code < 0:
        return f"pid {worker.pid} died with signal {-code}"
    return f"pid {worker.pid} exited with code {code}"


def _timeout_error(task: Task) -> str:
    return f"timeout after {task.timeout_s:g}s"
