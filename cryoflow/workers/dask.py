"""Jobs on a Dask cluster: workers on other machines (``ccnode``), HPC, Kubernetes.

:class:`DaskExecutor` holds an asynchronous ``distributed.Client`` on the head's loop,
to ``scheduler`` (``tcp://HOST:8786``) or to a ``LocalCluster`` it starts itself. The
head keeps the queue and the priorities: it submits only while :meth:`free_slots`
says so, and the slots come from the workers' Dask resources ``normal``, ``admin``
and ``gpu`` (``ccnode -n 4 -a 1 --gpus 1`` advertises them).

A job is one ``client.submit`` of :func:`run_dask_task` with the :class:`Task` as JSON
(never pickle), ``resources={class: 1}`` and ``pure=False``. On the worker it runs the
same job runtime as every other executor and returns a JSON-able dict; status values,
log lines and, last, the result come back live as Dask events on a topic of this
executor (``Worker.log_event`` → ``Client.subscribe_topic``), in order, so no line is
lost behind the result and no result is fetched from a worker.

- ``ccnode: HOST`` pins the job to the workers of that host (``workers=``); a worker's
  host is ``CRYOFLOW_NODE_NAME`` where set (``ccnode --name``), else its hostname; a
  worker's Dask name or address works too. ``ccnode: "all"`` runs the job once on every
  host and merges the results: each output becomes the list of the hosts' values,
  in host order.
- Cancel sets the job's cancel event on its worker (``client.run``); a job that ignores
  it is abandoned after the grace (a thread cannot be killed) and its result dropped.
- A worker that dies mid-job: the scheduler is asked for ``allowed_failures = 0``, so
  the job ends with ``KilledWorker`` at once and is reported lost; the head retries
  it (on another worker). A job that was only waiting on that worker is resubmitted
  without being reported. Without that setting Dask would retry both by itself.
- The scheduler lost: the executor waits for the client to reconnect (or connects a
  new one), subscribes again and resubmits every unfinished job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from distributed import KilledWorker
from distributed.client import FutureCancelledError

from cryoflow.errors import WorkerError
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.dask_cluster import DaskConnection, DaskOptions
from cryoflow.workers.dask_worker import cancel_on_worker, run_dask_task
from cryoflow.workers.lineproto import task_to_json, with_times

log = logging.getLogger(__name__)

MAX_RESUBMITS = 10
"""A job Dask keeps dropping (scheduler lost, future cancelled) is then reported lost."""
EVENTS_GRACE_S = 2.0
"""How long a job whose futures finished waits for its result event before fetching it."""


@dataclass(eq=False)
class _DaskJob:
    task: Task
    text: str
    futures: list[Any] = field(default_factory=list)
    run_id: str = ""
    addresses: set[str] = field(default_factory=set)
    payloads: dict[int, dict[str, Any]] = field(default_factory=dict)
    started: bool = False
    stop_reason: Outcome | None = None
    grace_s: float = 0.0
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    driver: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a run's result arrives or one of its futures settles."""
    resubmits: int = 0
    submitted: float = field(default_factory=time.time)


class _SchedulerLost(Exception):
    """The client lost the scheduler while the job's futures were out."""


class DaskExecutor:
    """Runs jobs as Dask tasks (see the module docstring)."""

    def __init__(self, options: DaskOptions | None = None) -> None:
        self._options = options or DaskOptions()
        topic = f"cryoflow-{uuid.uuid4().hex[:12]}"
        self._dask = DaskConnection(self._options, topic, self._on_event)
        self._topic = topic
        self._sink: JobSink | None = None
        self._jobs: dict[str, _DaskJob] = {}
        self._stopping = False

    # Executor interface

    async def start(self, sink: JobSink) -> None:
        """Connect (or start a LocalCluster) and learn the workers' slots."""
        self._sink = sink
        try:
            await self._dask.open()
        except (OSError, TimeoutError) as exc:
            where = self._options.scheduler or "a LocalCluster"
            raise WorkerError(f"cannot connect to the Dask scheduler at {where}: {exc}") from exc

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Drop every job (reported lost), close the client and any LocalCluster."""
        self._stopping = True
        for job in list(self._jobs.values()):
            self._lose(job, "the executor stopped while the job ran")
        await self._dask.close(timeout_s)

    def capacity(self) -> Mapping[WorkerClass, int]:
        return dict(self._dask.capacity)

    def free_slots(self) -> Mapping[WorkerClass, int]:
        """Slots, plus ``prefetch`` jobs per slot that may wait at Dask, minus ours."""
        busy = {c: 0 for c in WorkerClass}
        for job in self._jobs.values():
            busy[job.task.worker_class] += 1
        room = 1 + self._options.prefetch
        capacity = self._dask.capacity
        return {c: max(0, capacity[c] * room - busy[c]) for c in WorkerClass}

    def submit(self, task: Task) -> None:
        if task.id in self._jobs:
            raise ValueError(f"job {task.id} is already running")
        job = self._jobs[task.id] = _DaskJob(task, task_to_json(task))
        loop = asyncio.get_running_loop()
        job.driver = loop.create_task(self._drive(job))

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            self._stop_job(job, Outcome.CANCEL, grace_s)

    # Running one job

    async def _drive(self, job: _DaskJob) -> None:
        while True:
            try:
                await self._dask.connected()
                result = await self._run_once(job)
            except _SchedulerLost:
                continue
            except _KilledWorkers as exc:
                self._lose(job, str(exc))
                return
            except asyncio.CancelledError:
                if self._stopping:
                    raise
                result = JobResult(Outcome.CANCEL, error="cancelled")
            except Exception as exc:
                result = JobResult(Outcome.ERROR, error=_error_text(job.task, exc))
            self._finish(job, result)
            return

    async def _run_once(self, job: _DaskJob) -> JobResult:
        if job.stop_reason is not None:  # stopped while the scheduler was away
            return _stopped_result(job, None)
        job.run_id, job.started, job.addresses, job.payloads = uuid.uuid4().hex, False, set(), {}
        targets = self._targets(job.task)
        if isinstance(targets, JobResult):
            return targets
        job.futures = [
            self._submit_one(job, addresses, index) for index, addresses in enumerate(targets)
        ]
        _notify_when_settled(job, asyncio.get_running_loop())
        try:
            payloads = await self._payloads(job)
        except KilledWorker as exc:
            if job.started:
                raise _KilledWorkers(f"the Dask worker running the job died ({exc})") from exc
            self._count_resubmit(job, exc)  # it only waited there: no attempt was used
            raise _SchedulerLost() from exc
        except (FutureCancelledError, OSError) as exc:
            if job.stop_reason is not None:
                return _stopped_result(job, None)
            self._count_resubmit(job, exc)
            raise _SchedulerLost() from exc
        finally:
            job.futures = []  # releases the results held by the workers
        return _stopped_result(job, _combine(payloads))

    @staticmethod
    def _count_resubmit(job: _DaskJob, exc: BaseException) -> None:
        job.resubmits += 1
        if job.resubmits > MAX_RESUBMITS:
            raise _KilledWorkers(f"resubmitted {MAX_RESUBMITS} times: {exc}") from exc
        log.warning("job %s: Dask dropped it (%s); resubmitting", job.task.id, exc)

    async def _payloads(self, job: _DaskJob) -> list[dict[str, Any]]:
        """Every run's result, from its ``finished`` event; a failed future raises."""
        while len(job.payloads) < len(job.futures):
            job.changed.clear()
            failed = [f for f in job.futures if f.status in ("error", "cancelled", "lost")]
            if failed:
                await failed[0]  # raises what ended it (KilledWorker, cancelled, ...)
            if all(f.status == "finished" for f in job.futures):
                return await self._late_payloads(job)
            await job.changed.wait()
        return [job.payloads[i] for i in range(len(job.futures))]

    async def _late_payloads(self, job: _DaskJob) -> list[dict[str, Any]]:
        """Every future finished before its event came: wait a little, then fetch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EVENTS_GRACE_S
        while len(job.payloads) < len(job.futures) and (left := deadline - loop.time()) > 0:
            job.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.changed.wait(), left)
        return [job.payloads.get(i) or await f for i, f in enumerate(job.futures)]

    def _submit_one(self, job: _DaskJob, addresses: Sequence[str] | None, index: int) -> Any:
        task = job.task
        return self._dask.client.submit(
            run_dask_task,
            job.text,
            self._topic,
            job.run_id,
            index,
            key=f"cryoflow-{task.id}-{job.run_id[:8]}-{index}",
            resources={task.worker_class.value: 1},
            pure=False,
            workers=list(addresses) if addresses else None,
            allow_other_workers=False,
        )

    def _targets(self, task: Task) -> list[list[str] | None] | JobResult:
        """One list of worker addresses per run (None: any worker with the resource)."""
        if not task.ccnode:
            return [None]
        by_host: dict[str, list[str]] = {}
        for info in self._dask.workers.values():
            if info.resources.get(task.worker_class.value, 0) > 0:
                by_host.setdefault(info.host, []).append(info.address)
        if task.ccnode == "all":
            return [by_host[host] for host in sorted(by_host)] or [None]
        eligible = {address for addresses in by_host.values() for address in addresses}
        pinned = [
            i.address
            for i in self._dask.workers.values()
            if task.ccnode in (i.host, i.name, i.address, i.address.split("://")[-1])
            and i.address in eligible
        ]
        if pinned:
            return [pinned]
        return JobResult(
            Outcome.ERROR,
            error=(
                f"ccnode {task.ccnode!r} of node {task.node}: no Dask worker with a "
                f"{task.worker_class.value} slot on that host (hosts: {', '.join(sorted(by_host))})"
            ),
        )

    def _on_event(self, event: tuple[float, Mapping[str, Any]]) -> None:
        message = event[1]
        job = self._jobs.get(str(message.get("job")))
        if job is None or message.get("run") != job.run_id or self._sink is None:
            return
        kind = message.get("kind")
        if kind == "finished":
            job.payloads[int(message.get("index", 0))] = json.loads(message["payload"])
            job.changed.set()
        elif kind == "started":
            job.addresses.add(str(message.get("address")))
            if not job.started:
                job.started = True
                self._arm_timeout(job)
                self._sink.job_started(job.task.id, str(message["name"]), str(message["host"]))
        elif kind == "status":
            self._sink.job_status(job.task.id, str(message["key"]), json.loads(message["value"]))
        elif kind == "log":
            self._sink.job_log(job.task.id, str(message["level"]), str(message["message"]))

    # Stopping a job

    def _arm_timeout(self, job: _DaskJob) -> None:
        """A job's timeout counts from its start on a worker, not from its submission."""
        if job.task.timeout_s is not None:
            loop = asyncio.get_running_loop()
            grace = self._options.kill_grace_s
            job.timers.append(
                loop.call_later(job.task.timeout_s, self._stop_job, job, Outcome.TIMEOUT, grace)
            )

    def _stop_job(self, job: _DaskJob, reason: Outcome, grace_s: float) -> None:
        if job.stop_reason is not None or self._jobs.get(job.task.id) is not job:
            return
        job.stop_reason, job.grace_s = reason, grace_s
        if not job.started:
            asyncio.ensure_future(self._dask.client.cancel(job.futures))
            return
        asyncio.ensure_future(self._cancel_on_workers(job))
        loop = asyncio.get_running_loop()
        job.timers.append(loop.call_later(grace_s, self._abandon, job))

    async def _cancel_on_workers(self, job: _DaskJob) -> None:
        try:
            await self._dask.client.run(
                cancel_on_worker, job.task.id, workers=sorted(job.addresses), on_error="ignore"
            )
        except (OSError, TimeoutError) as exc:
            log.warning("could not cancel job %s on its Dask worker: %s", job.task.id, exc)

    def _abandon(self, job: _DaskJob) -> None:
        """The job ignored its cancel: stop waiting for it (its thread runs on)."""
        if self._jobs.get(job.task.id) is job:
            asyncio.ensure_future(self._dask.client.cancel(job.futures))

    # Reports

    def _finish(self, job: _DaskJob, result: JobResult) -> None:
        if self._end(job) and self._sink is not None:
            self._sink.job_finished(job.task.id, result)

    def _lose(self, job: _DaskJob, reason: str) -> None:
        if self._end(job) and self._sink is not None:
            self._sink.job_lost(job.task.id, reason)

    def _end(self, job: _DaskJob) -> bool:
        if self._jobs.get(job.task.id) is not job:
            return False
        del self._jobs[job.task.id]
        for timer in job.timers:
            timer.cancel()
        if job.driver is not None and job.driver is not asyncio.current_task():
            job.driver.cancel()
        return True


def _notify_when_settled(job: _DaskJob, loop: asyncio.AbstractEventLoop) -> None:
    """Set ``job.changed`` (on the loop) when any of its futures ends, however it ends."""

    def settled(_future: Any) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(job.changed.set)

    for future in job.futures:
        future.add_done_callback(settled)


class _KilledWorkers(Exception):
    """A worker died while it ran the job."""


def _stopped_result(job: _DaskJob, result: JobResult | None) -> JobResult:
    """A stopped job ends ``cancel`` or ``timeout`` however it ended on its worker."""
    if job.stop_reason is None:
        assert result is not None
        return result
    stats = with_times(result.stats if result is not None else {}, job.submitted)
    if job.stop_reason is Outcome.TIMEOUT:
        return JobResult(Outcome.TIMEOUT, None, f"timeout after {job.task.timeout_s:g}s", stats)
    if result is not None:
        return JobResult(Outcome.CANCEL, result.retval, result.error, stats)
    if not job.started:
        return JobResult(Outcome.CANCEL, None, "cancelled before it started", stats)
    error = (
        f"cancelled; the job ignored it for {job.grace_s:g}s and was abandoned on its Dask worker"
    )
    return JobResult(Outcome.CANCEL, None, error, stats)


def _combine(payloads: Sequence[Mapping[str, Any]]) -> JobResult:
    """One result of one run, or the merge of a ``ccnode: "all"`` fan-out."""
    results = [
        JobResult(Outcome(p["outcome"]), p.get("retval"), p.get("error"), p.get("stats") or {})
        for p in payloads
    ]
    if len(results) == 1:
        return results[0]
    hosts = [r.stats.get("node") for r in results]
    failed = next((r for r in results if r.outcome is not Outcome.SUCCESS), None)
    if failed is not None:
        return JobResult(
            failed.outcome,
            None,
            f"on {failed.stats.get('node')}: {failed.error}",
            {**failed.stats, "hosts": hosts},
        )
    keys = dict.fromkeys(k for r in results if isinstance(r.retval, Mapping) for k in r.retval)
    merged = {
        k: [r.retval.get(k) if isinstance(r.retval, Mapping) else None for r in results]
        for k in keys
    }
    return JobResult(Outcome.SUCCESS, merged, None, {**results[0].stats, "hosts": hosts})


def _error_text(task: Task, exc: BaseException) -> str:
    return f"Dask could not run job {task.id} of node {task.node}: {type(exc).__name__}: {exc}"


async def await_worker_classes(
    needed: Mapping[WorkerClass, Sequence[str]],
    capacity: Callable[[], Mapping[WorkerClass, int]],
    where: str,
    timeout_s: float = 30.0,
) -> None:
    """Wait until the connected cluster has a slot of each ``needed`` worker class.

    ``needed`` maps each class to the nodes that need it; ``capacity`` reads the
    executor's slots (the workers' Dask resources, looked up every ``refresh_s``).
    Raises :class:`WorkerError` naming the nodes and the ``ccnode`` flag to start the
    missing workers with, once ``timeout_s`` passed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        slots = capacity()
        missing = [c for c in needed if slots.get(c, 0) <= 0]
        if not missing:
            return
        if loop.time() >= deadline:
            raise WorkerError("; ".join(
                f"nodes {', '.join(needed[c])} need {c.value} workers but the Dask cluster at "
                f"{where} has none after {timeout_s:g} s; start one with "
                f"ccnode --scheduler {where} {_CCNODE_FLAG[c]}" for c in missing))
        await asyncio.sleep(0.2)


_CCNODE_FLAG = {WorkerClass.NORMAL: "-n 1", WorkerClass.ADMIN: "-a 1", WorkerClass.GPU: "--gpus 1"}
