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
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, get_worker
from distributed.client import FutureCancelledError

from cryoflow.errors import WorkerError
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.lineproto import dumps, task_from_json, task_to_json, with_times
from cryoflow.workers.runtime import run_task

log = logging.getLogger(__name__)

PLUGIN_NAME = "cryoflow-jobs"
NODE_ENV = "CRYOFLOW_NODE_NAME"
MAX_RESUBMITS = 10
"""A job Dask keeps dropping (scheduler lost, future cancelled) is then reported lost."""
EVENTS_GRACE_S = 2.0
"""How long a job whose futures finished waits for its result event before fetching it."""


@dataclass(frozen=True, kw_only=True)
class DaskOptions:
    """How :class:`DaskExecutor` connects and runs jobs. Units are in the names."""

    scheduler: str | None = None
    """``tcp://HOST:8786``; None starts a LocalCluster."""
    local_workers: int = 2
    local_resources: Mapping[str, int] = field(default_factory=lambda: {"normal": 1, "admin": 1})
    prefetch: int = 2
    """Jobs per slot that may wait at Dask, so a worker never waits for the head between
    short jobs (one sent ahead may start after a higher-priority job queued later)."""
    kill_grace_s: float = 2.0
    refresh_s: float = 1.0
    """How often the workers (and so the slots) are looked up."""
    connect_timeout_s: float = 30.0
    no_dask_retries: bool = True
    """Ask the scheduler for ``allowed_failures = 0`` (cryoflow retries lost jobs)."""


# On the worker


class JobRegistry(WorkerPlugin):
    """A Dask worker plugin: the cancel events of the jobs running in that worker."""

    idempotent = True
    name = PLUGIN_NAME

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {}  # sent to workers empty: events and lock are per process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def setup(self, worker: Any) -> None:
        """Called by Dask when the plugin is registered on a worker."""

    def teardown(self, worker: Any) -> None:
        """Called by Dask when the worker closes."""

    def track(self, job_id: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(job_id, threading.Event())

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self._events.pop(job_id, None)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            event = self._events.get(job_id)
        if event is not None:
            event.set()
        return event is not None


def node_name() -> str:
    """The host a worker stands for: ``CRYOFLOW_NODE_NAME``, else its hostname."""
    return os.environ.get(NODE_ENV) or socket.gethostname()


def run_dask_task(task_json: str, topic: str, run_id: str, index: int = 0) -> dict[str, Any]:
    """Run one job on this Dask worker; everything it reports goes out as events on
    ``topic``, the result last (``finished``), so it arrives after every status and log
    line without a fetch from the worker. The result is also returned, for a client
    that missed the event."""
    worker = get_worker()
    task = task_from_json(task_json)
    registry = _registry(worker)

    def emit(kind: str, **fields: Any) -> None:
        worker.log_event(topic, {"run": run_id, "job": task.id, "kind": kind, **fields})

    host = node_name()
    handle = WorkerHandle(
        str(worker.name),
        host=host,
        on_status=lambda _job, key, value: emit("status", key=key, value=dumps(value)),
        on_log=lambda _job, level, message: emit("log", level=level, message=message),
    )
    emit("started", name=str(worker.name), host=host, address=worker.address)
    cancel = registry.track(task.id) if registry is not None else threading.Event()
    try:
        result = run_task(task, handle, cancel)
    finally:
        if registry is not None:
            registry.untrack(task.id)
    payload = {
        "outcome": result.outcome.value,
        "retval": result.retval,
        "error": result.error,
        "stats": dict(result.stats),
    }
    text = dumps(payload)
    emit("finished", index=index, payload=text)
    return dict(json.loads(text))


def _registry(worker: Any) -> JobRegistry | None:
    plugin = worker.plugins.get(PLUGIN_NAME) if worker is not None else None
    return plugin if isinstance(plugin, JobRegistry) else None


def cancel_on_worker(job_id: str, dask_worker: Any = None) -> bool:
    """``client.run`` target: set the job's cancel event on this worker."""
    registry = _registry(dask_worker)
    return bool(registry is not None and registry.cancel(job_id))


def no_dask_retries(dask_scheduler: Any = None) -> int:
    """``client.run_on_scheduler`` target: a worker's death fails its task at once."""
    if dask_scheduler is not None:
        dask_scheduler.allowed_failures = 0
    return 0


# On the head


@dataclass
class _WorkerInfo:
    address: str
    name: str
    host: str
    resources: Mapping[str, float]


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
        self._client: Any = None
        self._cluster: Any = None
        self._sink: JobSink | None = None
        self._topic = f"cryoflow-{uuid.uuid4().hex[:12]}"
        self._jobs: dict[str, _DaskJob] = {}
        self._workers: dict[str, _WorkerInfo] = {}
        self._capacity: dict[WorkerClass, int] = {c: 0 for c in WorkerClass}
        self._refresher: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._stopping = False

    # Executor interface

    async def start(self, sink: JobSink) -> None:
        """Connect (or start a LocalCluster) and learn the workers' slots."""
        self._sink = sink
        try:
            await self._connect()
        except (OSError, TimeoutError) as exc:
            where = self._options.scheduler or "a LocalCluster"
            raise WorkerError(f"cannot connect to the Dask scheduler at {where}: {exc}") from exc
        self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Drop every job (reported lost), close the client and any LocalCluster."""
        self._stopping = True
        for task in (self._refresher, self._reconnecting):
            if task is not None:
                task.cancel()
        for job in list(self._jobs.values()):
            self._lose(job, "the executor stopped while the job ran")
        if self._client is not None:
            await asyncio.wait_for(self._client.close(), timeout_s)
        if self._cluster is not None:
            await asyncio.wait_for(self._cluster.close(), timeout_s)

    def capacity(self) -> Mapping[WorkerClass, int]:
        return dict(self._capacity)

    def free_slots(self) -> Mapping[WorkerClass, int]:
        """Slots, plus ``prefetch`` jobs per slot that may wait at Dask, minus ours."""
        busy = {c: 0 for c in WorkerClass}
        for job in self._jobs.values():
            busy[job.task.worker_class] += 1
        room = 1 + self._options.prefetch
        return {c: max(0, self._capacity[c] * room - busy[c]) for c in WorkerClass}

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

    # Connecting

    async def _connect(self) -> None:
        if self._options.scheduler is None and self._cluster is None:
            self._cluster = await _local_cluster(self._options)
        address = self._options.scheduler or self._cluster.scheduler_address
        self._client = await Client(
            address, asynchronous=True, timeout=self._options.connect_timeout_s
        )
        await self._prepare_cluster()

    async def _prepare_cluster(self) -> None:
        client = self._client
        client.subscribe_topic(self._topic, self._on_event)
        await client.register_plugin(JobRegistry(), name=PLUGIN_NAME)
        if self._options.no_dask_retries:
            try:
                await client.run_on_scheduler(no_dask_retries)
            except Exception as exc:  # the scheduler may lack cryoflow; Dask then retries
                log.warning(
                    "the Dask scheduler kept its own retries of lost workers' tasks "
                    "(%s); set distributed.scheduler.allowed-failures to 0 there",
                    exc,
                )
        await self._refresh()

    async def _connected(self) -> None:
        """Return once the client talks to a scheduler again (reconnecting if needed)."""
        if self._client is not None and self._client.status == "running":
            return
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.ensure_future(self._reconnect())
        await asyncio.shield(self._reconnecting)

    async def _reconnect(self) -> None:
        while not self._stopping:
            status = self._client.status if self._client is not None else "closed"
            if status == "running":
                break
            if status in ("closed", "closing", "failed"):
                await self._replace_client()
                continue
            await asyncio.sleep(0.1)
        await self._prepare_cluster()

    async def _replace_client(self) -> None:
        old, self._client = self._client, None
        if old is not None:
            await old.close()
        address = self._options.scheduler or self._cluster.scheduler_address
        try:
            self._client = await Client(
                address, asynchronous=True, timeout=self._options.connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            log.warning("Dask scheduler %s not reachable yet (%s); trying again", address, exc)
            await asyncio.sleep(1.0)

    # Workers and slots

    async def _refresh_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._options.refresh_s)
            try:
                await self._refresh()
            except (OSError, TimeoutError, AttributeError) as exc:
                log.debug("Dask worker refresh failed: %s", exc)

    async def _refresh(self) -> None:
        client = self._client
        if client is None or client.status != "running":
            return
        identity = await client.scheduler.identity(n_workers=-1)
        workers = identity.get("workers", {})
        new = [a for a in workers if a not in self._workers]
        hosts = await client.run(node_name, workers=new, on_error="ignore") if new else {}
        self._workers = {
            address: _WorkerInfo(
                address,
                str(info.get("name", address)),
                str(hosts.get(address) or self._known_host(address, info)),
                info.get("resources") or {},
            )
            for address, info in workers.items()
        }
        self._capacity = _slots(self._workers.values())

    def _known_host(self, address: str, info: Mapping[str, Any]) -> str:
        known = self._workers.get(address)
        return known.host if known is not None else str(info.get("host", address))

    # Running one job

    async def _drive(self, job: _DaskJob) -> None:
        while True:
            try:
                await self._connected()
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
        return self._client.submit(
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
        for info in self._workers.values():
            if info.resources.get(task.worker_class.value, 0) > 0:
                by_host.setdefault(info.host, []).append(info.address)
        if task.ccnode == "all":
            return [by_host[host] for host in sorted(by_host)] or [None]
        pinned = [
            i.address
            for i in self._workers.values()
            if task.ccnode in (i.host, i.name, i.address, i.address.split("://")[-1])
            and i.address in sum(by_host.values(), [])
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
            asyncio.ensure_future(self._client.cancel(job.futures))
            return
        asyncio.ensure_future(self._cancel_on_workers(job))
        loop = asyncio.get_running_loop()
        job.timers.append(loop.call_later(grace_s, self._abandon, job))

    async def _cancel_on_workers(self, job: _DaskJob) -> None:
        try:
            await self._client.run(
                cancel_on_worker, job.task.id, workers=sorted(job.addresses), on_error="ignore"
            )
        except (OSError, TimeoutError) as exc:
            log.warning("could not cancel job %s on its Dask worker: %s", job.task.id, exc)

    def _abandon(self, job: _DaskJob) -> None:
        """The job ignored its cancel: stop waiting for it (its thread runs on)."""
        if self._jobs.get(job.task.id) is job:
            asyncio.ensure_future(self._client.cancel(job.futures))

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


async def _local_cluster(options: DaskOptions) -> Any:
    return await LocalCluster(
        n_workers=options.local_workers,
        threads_per_worker=max(1, int(sum(options.local_resources.values()))),
        processes=True,
        asynchronous=True,
        host="127.0.0.1",
        dashboard_address=":0",
        resources=dict(options.local_resources),
    )


def _slots(workers: Any) -> dict[WorkerClass, int]:
    slots = {c: 0 for c in WorkerClass}
    for info in workers:
        for worker_class in WorkerClass:
            slots[worker_class] += int(info.resources.get(worker_class.value, 0))
    return slots


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
