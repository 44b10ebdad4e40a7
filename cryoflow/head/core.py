"""The head: one asyncio loop that owns the store, the engine and the dispatcher.

Everything that happens (an item offered by an input, a job started, a status value,
a job's result) is queued as a pending event. Once per loop tick the head applies all
pending events to the engine and commits them, with the actions they cause, in one
transaction (group commit); only then are items acknowledged and jobs dispatched.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cryoflow.dispatch import Dispatcher
from cryoflow.engine.core import Engine
from cryoflow.engine.records import (
    Action,
    CancelJob,
    JobFinished,
    JobLost,
    JobSpec,
    PebbleAdded,
    PebbleCancelled,
    PebbleDone,
    PebbleOutcome,
    PebbleRetried,
    QueueJob,
)
from cryoflow.errors import StoreBrokenError, StoreError
from cryoflow.failpoints import Failpoints
from cryoflow.graph.instances import base_name
from cryoflow.graph.model import Graph, Outcome
from cryoflow.head.inbox import (
    CancelRequest,
    JobLoss,
    JobReport,
    JobStart,
    LogLine,
    Offer,
    Pending,
    RunCounts,
    StatusValue,
    failure_line,
    pebble_failed,
    pebble_failed_lines,
)
from cryoflow.head.jobs import cache_key, task_for
from cryoflow.staging.tempdirs import remove_pebble_tempdirs
from cryoflow.store import Retention, Store
from cryoflow.workers.base import DEFAULT_MAX_RESULT_BYTES, Executor, JobResult, Task
from cryoflow.workers.results import result_cap

log = logging.getLogger("cryoflow.head")

LAZY_TICK_S = 0.05
"""How long job starts, status values and log lines may wait for the next commit."""
AHEAD_MAX_S = 0.05
"""Jobs go ahead to busy workers only while a full backlog of them runs in less time."""

Listener = Callable[[Action], None]
"""Receives every committed action (web view, metrics, display, active records)."""


class Head:
    """Runs one workflow graph: accepts items, applies events, dispatches jobs."""

    def __init__(
        self,
        graph: Graph,
        *,
        store: Store,
        executor: Executor,
        options: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        module_paths: tuple[str, ...] = (),
        poison_limit: int = 3,
        clock: Callable[[], float] = time.time,
        failpoints: Failpoints | None = None,
        use_cache: bool = True,
        retention: Retention | None = None,
    ) -> None:
        self.graph = graph
        self.store = store
        self.executor = executor
        self.options = dict(options or {})
        self.config = dict(config or {})
        self.max_result_bytes = result_cap(self.config, DEFAULT_MAX_RESULT_BYTES)
        self.module_paths = module_paths
        self.clock = clock
        self.failpoints = failpoints or Failpoints()
        self.use_cache = use_cache
        self.retention = (retention if retention is not None
                          else Retention.from_config(self.config.get("retention")))
        """Finished pebbles the store keeps (config ``retention``); pruned as the head runs."""
        self._pruned_at = (0.0, 0)
        self.engine = Engine(graph, options=self.options, config=self.config,
                             poison_limit=poison_limit)
        self.status: dict[tuple[str, str], Any] = {}
        self.progress: dict[str, Any] = {}
        """Latest ``progress`` status of each running job."""
        self._progress_pending: dict[str, Any] = {}
        self.dispatcher = Dispatcher(graph, self.status_value)
        self.held: dict[str, str] = {}
        """Nodes whose queued jobs a restriction holds, with the reason (for the API)."""
        self.counts = RunCounts()
        self.listeners: list[Listener] = []
        self.host = socket.gethostname()
        self._pending = Pending()
        self._tick_scheduled = False
        self._offer_tick = False
        self._jobs: dict[str, JobSpec] = {}
        self._job_hosts: dict[str, tuple[str, str]] = {}
        self._runtimes: dict[str, float] = {}
        """Moving average of each node's job run time (s), for sending jobs ahead."""
        self._tempdir_bases: dict[int, set[str | None]] = {}
        self._idle = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lazy: asyncio.TimerHandle | None = None
        self.accepting = True
        self.fatal: StoreError | None = None
        """Why the head stopped for good: the store failed in a way retrying cannot mend."""
        self.paused = False
        """While paused, queued jobs stay queued (inputs are still accepted)."""

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Resume what the store holds, then start the executor."""
        self._loop = asyncio.get_running_loop()
        self._resume()
        await self.executor.start(self)
        self._schedule_tick()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the executor and commit what it reported; queued jobs stay in the store.

        Jobs still running are stopped by the executor and retried at the next start.
        """
        self.accepting = False
        self.paused = True
        for handle in (self._timer, self._lazy):
            if handle is not None:
                handle.cancel()
        await self.executor.stop(timeout_s)
        if self._pending:
            self._tick()
        self._loop = None  # late reports from here on are dropped, not ticked

    async def wait_idle(self) -> None:
        """Return once no pebble is active and nothing is pending."""
        while (self.engine.active or self._pending or len(self.dispatcher)) and not self.fatal:
            self._idle.clear()
            await self._idle.wait()

    def status_value(self, channel: str, param: str) -> Any:
        """The latest status value; ``NODE:pending``/``NODE:running`` count its jobs."""
        if channel in self.graph.nodes and param in ("pending", "running"):
            queued, running = self.dispatcher.node_load(channel)
            return queued if param == "pending" else running
        return self.status.get((channel, param))

    # ------------------------------------------------------------------ inputs

    def offer(
        self,
        input_node: str,
        item: Mapping[str, Any],
        *,
        idem_key: str | None = None,
        seen_key: str | None = None,
    ) -> asyncio.Future[int]:
        """Accept an item; the future gives its pebble id once it is committed."""
        assert self._loop is not None, "start() the head first"
        future: asyncio.Future[int] = self._loop.create_future()
        self._pending.offers.append(Offer(input_node, item, future, idem_key, seen_key))
        if not self._tick_scheduled and not self._offer_tick:
            # One loop pass later: the posts read in this pass ride on the same commit.
            self._offer_tick = True
            self._loop.call_soon(self._schedule_offer_tick)
        return future

    def _schedule_offer_tick(self) -> None:
        self._offer_tick = False
        self._schedule_tick()

    def replace_graph(self, graph: Graph) -> None:
        """Run on ``graph`` from now on: a graph grown by a running job (dynamic graphs)."""
        self.graph = graph
        self.engine.replace_graph(graph)
        self.dispatcher.graph = graph

    def retry_pebble(self, pebble_id: int) -> bool:
        """Run a failed pebble again from its failed nodes; False if it did not fail."""
        saved = self.store.pebble(pebble_id)
        if saved is None or saved["outcome"] != "failed" or pebble_id in self._pending.retries:
            return False
        self._pending.retries.append(pebble_id)
        self._schedule_tick()
        return True

    def cancel_pebble(self, pebble_id: int, reason: str = "cancelled by a user") -> None:
        self._pending.cancels.append(CancelRequest(pebble_id, reason))
        self._schedule_tick()

    # ------------------------------------------------------------------ JobSink

    def job_started(self, job_id: str, worker: str, host: str) -> None:
        self._job_hosts[job_id] = (worker, host)
        self._pending.started.append(JobStart(job_id, worker, host))
        self._schedule_lazy_tick()

    def job_status(self, job_id: str, key: str, value: Any) -> None:
        job = self._jobs.get(job_id)
        channel = base_name(job.node) if job else job_id
        if key == "progress":
            self._progress_pending[job_id] = value  # shown once committed, with the status
        self._pending.status.append(StatusValue(channel, key, value))
        self._schedule_lazy_tick()

    def job_log(self, job_id: str, level: str, message: str) -> None:
        job = self._jobs.get(job_id)
        pebble = job.pebble_id if job else None
        node = job.node if job else None
        self._pending.logs.append(LogLine(self.clock(), level, pebble, job_id, node, message))
        self._schedule_lazy_tick()

    def job_finished(self, job_id: str, result: JobResult) -> None:
        self._pending.results.append(JobReport(job_id, result))
        self._schedule_tick()

    def job_lost(self, job_id: str, reason: str) -> None:
        self._pending.lost.append(JobLoss(job_id, reason))
        self._schedule_tick()

    # ------------------------------------------------------------------ the tick

    def _schedule_tick(self) -> None:
        if not self._tick_scheduled and self._loop is not None:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _schedule_lazy_tick(self) -> None:
        """Progress reports ride on the next tick, at most ``LAZY_TICK_S`` from now."""
        if not self._tick_scheduled and self._lazy is None and self._loop is not None:
            self._lazy = self._loop.call_later(LAZY_TICK_S, self._schedule_tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        if self._loop is None:
            return  # a tick scheduled before stop(): the store may be closed by now
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        pending, self._pending = self._pending, Pending()
        if self.fatal is not None:
            self._fail(pending, self.fatal)
            return
        now = self.clock()
        if pending.results:
            self.failpoints.hit("head_report_received_before_commit")
        try:
            accepted, actions, handed = self._commit(pending, now)
        except StoreError as exc:
            self._reject(pending, exc)
            return
        self._hand_off(handed)
        if accepted:
            self.failpoints.hit("post_committed_before_ack")
        for offer, pebble_id in accepted:
            if not offer.future.done():
                offer.future.set_result(pebble_id)
        self._committed(actions)
        self._note_holds()
        self._prune(now)
        if not (self.engine.active or self._pending or len(self.dispatcher)):
            self._idle.set()

    def _note_holds(self) -> None:
        """Log once per change which restriction holds a node's queued jobs."""
        held = self.dispatcher.held()
        if held == self.held:
            return
        for node, reason in held.items():
            if self.held.get(node) != reason:
                log.info("node '%s' waits: %s", node, reason)
        for node in self.held.keys() - held.keys():
            log.info("node '%s' no longer waits", node)
        self.held = held

    def _prune(self, now: float) -> None:
        """Let retention remove old finished pebbles, every ``interval_s`` or ``batch``."""
        if not self.retention.active:
            return
        finished = self.counts.completed + self.counts.failed
        when, count = self._pruned_at
        if now - when < self.retention.interval_s and finished - count < self.retention.batch:
            return
        self._pruned_at = (now, finished)
        try:
            self.store.prune(self.retention, now=now)
        except StoreError as exc:
            log.warning("could not prune finished pebbles: %s", exc)

    def _commit(
        self, pending: Pending, now: float
    ) -> tuple[list[tuple[Offer, int]], list[Action], list[JobSpec]]:
        accepted: list[tuple[Offer, int]] = []
        failures: list[LogLine] = []
        actions: list[Action] = []
        handed: list[JobSpec] = []
        with self._dispatch_guard(handed, actions, now), self.store.batch() as tx:
            for offer in pending.offers:
                pebble_id, created = tx.add_pebble(
                    offer.input_node, offer.item, now=now, idem_key=offer.idem_key,
                    seen_key=offer.seen_key)
                if created:
                    self.counts.accepted += 1
                    actions += self.engine.handle(
                        PebbleAdded(pebble_id, offer.input_node, offer.item), now)
                accepted.append((offer, pebble_id))
            reported = {report.job_id for report in pending.results}
            for start in pending.started:
                tx.job_started(start.job_id, worker=start.worker, host=start.host, now=now,
                               write=start.job_id not in reported)
            for report in pending.results:
                actions += self._result_event(tx, report.job_id, report.result, now, failures)
            for loss in pending.lost:
                self.dispatcher.finished(loss.job_id)
                lost_job = self._jobs.pop(loss.job_id, None)
                self.progress.pop(loss.job_id, None)
                tx.job_finished(loss.job_id, outcome="lost", retval=None, error=loss.reason,
                                stats={}, now=now)
                actions += self.engine.handle(
                    JobLost(loss.job_id, loss.reason, job=lost_job), now)
            for pebble_id in pending.retries:
                actions += self._retry_event(pebble_id, now)
            for cancel in pending.cancels:
                actions += self.engine.handle(PebbleCancelled(cancel.pebble_id, cancel.reason),
                                              now)
            for status in pending.status:
                self.status[(status.channel, status.key)] = status.value
                tx.set_status(status.channel, status.key, status.value, now=now)
            for job_id, value in self._progress_pending.items():
                if job_id in self._jobs:
                    self.progress[job_id] = value
            self._progress_pending.clear()
            logs = [*pending.logs, *failures, *pebble_failed_lines(actions, now)]
            if logs:  # a job's own lines, then why it failed, then the pebbles that failed
                tx.add_logs(logs)
            self._start_jobs(actions, now)
            handed += self._dispatch(now)
            ids = [job.id for job in handed]
            tx.apply(actions, now=now, dispatched=set(ids))
            tx.jobs_dispatched(ids, now=now)
        return accepted, actions, handed

    def _result_event(self, tx: Any, job_id: str, result: JobResult, now: float,
                      failures: list[LogLine]) -> list[Action]:
        worker, host = self._job_hosts.pop(job_id, ("", self.host))
        stats = {"worker": worker, "node": host, **result.stats}
        job = self._jobs.get(job_id)
        key = self._cache_key(job) if job is not None else None
        if key is not None and result.outcome is Outcome.SUCCESS and not stats.get("cached"):
            tx.cache_put(key, node=job.node if job else "", retval=result.retval, now=now)
        tx.job_finished(job_id, outcome=result.outcome.value, retval=result.retval,
                        error=result.error, stats=stats, now=now)
        if result.outcome in (Outcome.ERROR, Outcome.TIMEOUT) and job is not None:
            failures.append(failure_line(job, result, now))
        if job is not None:
            self._measure(job.node, stats)
        self.dispatcher.finished(job_id)
        self._jobs.pop(job_id, None)
        self.progress.pop(job_id, None)
        event = JobFinished(job_id, result.outcome, result.retval, result.error, stats, job)
        return self.engine.handle(event, now)

    def _retry_event(self, pebble_id: int, now: float) -> list[Action]:
        saved = self.store.saved_pebble(pebble_id)
        if saved is None or self.engine.pebble(pebble_id) is not None:
            return []
        self.engine.restore(*saved)
        actions = self.engine.handle(PebbleRetried(pebble_id), now)
        if not actions:
            self.engine.forget(pebble_id)
        return actions

    def _reject(self, pending: Pending, exc: StoreError) -> None:
        """The store refused the batch: refuse the items, rebuild state, retry the rest.

        A damaged database or a failing disk (:class:`StoreBrokenError`) stops the head.
        """
        if isinstance(exc, StoreBrokenError):
            self._fail(pending, exc)
            return
        log.error("state store refused a commit: %s", exc)
        for offer in pending.offers:
            if not offer.future.done():
                offer.future.set_exception(exc)
        pending.offers = []
        self.engine = Engine(self.graph, options=self.options, config=self.config,
                             poison_limit=self.engine.poison_limit)
        try:
            for pebble_id, input_node, item, states in self.store.active_pebbles():
                self.engine.restore(pebble_id, input_node, item, states)
        except StoreError as again:
            self._fail(pending, again)
            return
        self._pending = pending
        assert self._loop is not None
        self._loop.call_later(0.5, self._schedule_tick)

    def _fail(self, pending: Pending, exc: StoreError) -> None:
        """Stop taking work for good: refuse the waiting items and wake whoever waits."""
        if self.fatal is None:
            log.critical("the head stopped: %s", exc)
            self.fatal = exc
        self.accepting = False
        self.paused = True
        for offer in pending.offers:
            if not offer.future.done():
                offer.future.set_exception(exc)
        self._idle.set()

    # ------------------------------------------------------------------ actions

    def _start_jobs(self, actions: list[Action], now: float) -> None:
        """Queue the new jobs, cancel the cancelled ones."""
        for action in actions:
            if isinstance(action, QueueJob):
                self._queue(action.job, now)
            elif isinstance(action, CancelJob):
                self.dispatcher.cancel(action.job_id)
                if action.job_id in self._jobs:
                    self.executor.cancel(action.job_id)

    @contextmanager
    def _dispatch_guard(self, handed: list[JobSpec], actions: list[Action],
                        now: float) -> Iterator[None]:
        """If the batch fails: put the jobs chosen for workers back in the queue, and drop
        the jobs it queued (the engine is rebuilt from the store and queues them again,
        unless their pebble was refused)."""
        try:
            yield
        except BaseException:
            for job in handed:
                self.dispatcher.finished(job.id)
                self._jobs.pop(job.id, None)
                self.dispatcher.add(job, now)
            for action in actions:
                if isinstance(action, QueueJob):
                    self.dispatcher.cancel(action.job.id)
            raise

    def _hand_off(self, handed: list[JobSpec]) -> None:
        """Send the jobs whose dispatch was just committed to the workers.

        Only after the commit: every job a worker may run is then a recorded attempt.
        """
        tasks = [self.task_for(job) for job in handed if job.id in self._jobs]
        submit_many = getattr(self.executor, "submit_many", None)
        if submit_many is not None and len(tasks) > 1:
            submit_many(tasks)  # one message per worker
        else:
            for task in tasks:
                self.executor.submit(task)

    def _committed(self, actions: list[Action]) -> None:
        """What may only happen once the actions are durable: completions, listeners."""
        for action in actions:
            if isinstance(action, PebbleDone):
                self._pebble_done(action)
        for listener in self.listeners:
            for action in actions:
                listener(action)

    def _queue(self, job: JobSpec, now: float) -> None:
        self.dispatcher.add(job, now)
        if not job.files:
            return
        bases = self._tempdir_bases.setdefault(job.pebble_id, set())
        for flags in job.files.values():
            # tempdirs, and the inputs folder remote files are fetched into
            bases.add(flags.get("base") if flags.get("type") == "tempdir" else None)

    def _pebble_done(self, done: PebbleDone) -> None:
        if done.outcome is PebbleOutcome.COMPLETED:
            self.counts.completed += 1
        else:
            self.counts.failed += 1
            log.warning("%s", pebble_failed(done))
        bases = self._tempdir_bases.pop(done.pebble_id, set())
        if bases:
            remove_pebble_tempdirs(self.graph.name, done.pebble_id, bases)

    def pause(self, paused: bool = True) -> None:
        """Hold (or release) dispatching of queued jobs."""
        self.paused = paused
        self._schedule_tick()

    def _dispatch(self, now: float) -> list[JobSpec]:
        """Choose the jobs for the free worker slots (handed off after the commit).

        Idle workers take the best ready job. Room to send a busy worker its next job
        ahead is used only for a job whose node measured short (:data:`AHEAD_MAX_S`), so
        a job sent ahead never holds up a higher-priority one for longer than that.
        """
        if self.paused:
            return []
        chosen: list[JobSpec] = []
        slots_of = getattr(self.executor, "slots", None)
        if slots_of is not None:
            slots = dict(slots_of())
        else:
            slots = {c: (n, 0) for c, n in self.executor.free_slots().items()}
        for worker_class, (idle, ahead) in slots.items():
            for index in range(idle + ahead):
                accept = None if index < idle else self._short
                job = self.dispatcher.next_job(worker_class, now, accept)
                if job is None:
                    break
                self._jobs[job.id] = job
                if not self._answer_from_cache(job, now):
                    chosen.append(job)
        self._arm_timer(now)
        return chosen

    def _short(self, job: JobSpec) -> bool:
        """Did ``job``'s node measure short enough to be sent ahead to a busy worker?

        Short enough that a worker's whole backlog of such jobs (the executor's
        ``prefetch`` of them) takes less than :data:`AHEAD_MAX_S`.
        """
        runtime = self._runtimes.get(job.node)
        depth = max(1, getattr(self.executor, "prefetch", 1))
        return runtime is not None and runtime * depth < AHEAD_MAX_S

    def _measure(self, node: str, stats: Mapping[str, Any]) -> None:
        """Keep a moving average of the node's job run times."""
        runtime = stats.get("runtime")
        if isinstance(runtime, int | float):
            last = self._runtimes.get(node)
            self._runtimes[node] = runtime if last is None else 0.8 * last + 0.2 * runtime

    def _cache_key(self, job: JobSpec) -> str | None:
        """The hash of a cached node's module and listed args, or None (no ``cache``)."""
        return cache_key(self.graph, job) if self.use_cache else None

    def _answer_from_cache(self, job: JobSpec, now: float) -> bool:
        """Finish ``job`` with an earlier successful result of the same inputs, if any."""
        key = self._cache_key(job)
        found = self.store.cache_get(key) if key is not None else None
        if found is None:
            return False
        retval, when = found
        expires = self.graph.nodes[base_name(job.node)].cache.expires_s  # type: ignore[union-attr]
        if expires is not None and now - when > expires:
            return False
        self.job_finished(job.id, JobResult(Outcome.SUCCESS, retval, stats={"cached": True}))
        return True

    def _arm_timer(self, now: float) -> None:
        wake = self.dispatcher.next_wakeup()
        if wake is None or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(max(0.0, wake - now), self._schedule_tick)

    def task_for(self, job: JobSpec) -> Task:
        """The self-contained task a worker runs for ``job``."""
        return task_for(self.graph, job, module_paths=self.module_paths,
                        staging=self.config.get("staging") or {},
                        max_result_bytes=self.max_result_bytes)

    # ------------------------------------------------------------------ resume

    def _resume(self) -> None:
        """Load unfinished pebbles and open jobs; retry jobs that were running."""
        now = self.clock()
        replay: list[tuple[int, str, dict[str, Any]]] = []
        for pebble_id, input_node, item, states in self.store.active_pebbles():
            if states:
                self.engine.restore(pebble_id, input_node, item, states)
            else:
                replay.append((pebble_id, input_node, item))
        actions: list[Action] = []
        for pebble_id, input_node, item in replay:
            actions += self.engine.handle(PebbleAdded(pebble_id, input_node, item), now)
        queued = [job for job, state in self.store.open_jobs() if state == "queued"]
        with self.store.batch() as tx:
            for job_id in tx.requeue_running(now=now):
                actions += self.engine.handle(
                    JobLost(job_id, "the head restarted while the job was running",
                            charged=False), now)
            tx.apply(actions, now=now)
        for job in queued:
            if self.engine.is_current(job.id):
                self._queue(job, now)
        self._start_jobs(actions, now)  # dispatched at the first tick
        self._committed(actions)


__all__ = ["Head", "Listener"]
