"""An executor in front of others: external executors, containers, started jobs, growth.

:class:`RoutingExecutor` hands every task to its ``inner`` executor, except tasks whose
node has ``extra["executortype"]``: those go to an :class:`ExternalQueue` (the
ColonyOS-style assignment queue of :mod:`cryoflow.colony.queue`), where executors pull
them over the REST API; and, when a ``containers`` executor is given, tasks of nodes
with a ``docker`` or ``image`` go to it. It also watches what the executors report:

- ``job_started`` is passed to ``on_started`` (the active records of a flow);
- a status value under :data:`ADD_CHILD_KEY` (set from inside a job by
  :meth:`~cryoflow.workers.handle.WorkerHandle.add_child` or
  :func:`cryoflow.colony.dynamic.add_child`) grows the running graph through
  ``on_grow``; a refused request fails the job that made it, with the reason.

The head counts one free slot per external task it hands over, though no local slot is
taken; the status value ``NODE.executor = "waiting"`` published for such a task makes
the head look again at once. When the inner executor is full, one extra slot per class
is offered so that external tasks never wait behind local ones; a local task taken
through it is held here until a slot of its executor frees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cryoflow.graph.instances import base_name
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import Executor, JobResult, JobSink, Task

ADD_CHILD_KEY = "cryoflow.add_child"
"""The status key through which a running job asks to add a child node."""

Grow = Callable[[JobSink, str, Mapping[str, Any]], str | None]
"""``(head, job_id, request)`` → None when the graph grew, else why it was refused."""


class ExternalQueue(Protocol):
    """Where tasks for external executors wait (see :mod:`cryoflow.colony.queue`)."""

    def put(self, task: Task, sink: JobSink, priority: int) -> None:
        """Hold ``task``; report its start and end on ``sink``."""

    def cancel(self, job_id: str) -> bool:
        """Withdraw a held or assigned task; True if it was there."""

    def drop(self, sink: JobSink) -> None:
        """Forget every task of ``sink`` (its head is stopping)."""


class RoutingExecutor:
    """Routes tasks to an inner executor or an external queue (see the module docstring)."""

    def __init__(
        self,
        inner: Executor,
        *,
        containers: Executor | None = None,
        external: ExternalQueue | None = None,
        on_started: Callable[[str], None] | None = None,
        on_grow: Grow | None = None,
        route_images: bool = True,
    ) -> None:
        self.inner = inner
        self.route_images = route_images
        """Send ``image`` nodes (not only ``docker`` ones) to ``containers``."""
        self.targets: tuple[Executor, ...] = (inner,) if containers is None else (
            inner, containers)
        self.external = external
        self.on_started = on_started
        self.on_grow = on_grow
        self._sink: _WatchingSink | None = None
        self._external_jobs: set[str] = set()
        self._held: dict[tuple[int, WorkerClass], list[Task]] = {}
        self._refused: dict[str, str] = {}

    async def start(self, sink: JobSink) -> None:
        self._sink = _WatchingSink(self, sink)
        started: list[Executor] = []
        try:
            for target in self.targets:
                await target.start(self._sink)
                started.append(target)
        except BaseException:
            for target in started:
                await target.stop()
            raise

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.external is not None and self._sink is not None:
            self.external.drop(self._sink)
        self._held.clear()
        for target in self.targets:
            await target.stop(timeout_s)

    def capacity(self) -> Mapping[WorkerClass, int]:
        capacity: dict[WorkerClass, int] = {}
        for target in self.targets:
            for worker_class, n in target.capacity().items():
                capacity[worker_class] = capacity.get(worker_class, 0) + n
        if self.external is not None:
            capacity[WorkerClass.NORMAL] = max(1, capacity.get(WorkerClass.NORMAL, 0))
        return capacity

    def free_slots(self) -> Mapping[WorkerClass, int]:
        spare = self.external is not None or len(self.targets) > 1
        free: dict[WorkerClass, int] = {}
        for worker_class in self.capacity():
            held = sum(len(self._held.get((i, worker_class), ()))
                       for i in range(len(self.targets)))
            open_ = sum(max(0, t.free_slots().get(worker_class, 0)) for t in self.targets)
            free[worker_class] = max(0, open_ - held) + (1 if spare and not held else 0)
        return free

    def submit(self, task: Task) -> None:
        if self.external is not None and task.extra.get("executortype"):
            self._submit_external(task)
            return
        index = self._target_of(task)
        held = self._held.setdefault((index, task.worker_class), [])
        if self.targets[index].free_slots().get(task.worker_class, 0) > len(held):
            self.targets[index].submit(task)
        else:
            held.append(task)

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        if job_id in self._external_jobs and self.external is not None:
            self.external.cancel(job_id)
            return
        for held in self._held.values():
            for task in held:
                if task.id == job_id:
                    held.remove(task)
                    self._report_finished(job_id, JobResult(Outcome.CANCEL, error="cancelled"))
                    return
        for target in self.targets:
            target.cancel(job_id, grace_s)

    def _target_of(self, task: Task) -> int:
        wants = task.docker or (self.route_images and task.image)
        return 1 if len(self.targets) > 1 and wants else 0

    # ------------------------------------------------------------------ internals

    def _submit_external(self, task: Task) -> None:
        assert self.external is not None and self._sink is not None
        self._external_jobs.add(task.id)
        graph = getattr(self._sink.sink, "graph", None)
        node = graph.nodes.get(base_name(task.node)) if graph is not None else None
        self._sink.sink.job_status(task.id, "executor", "waiting")
        self.external.put(task, self._sink, node.priority if node is not None else 50)

    def _report_finished(self, job_id: str, result: JobResult) -> None:
        if self._sink is not None:
            self._sink.sink.job_finished(job_id, result)

    def release_held(self) -> None:
        """Submit held tasks to the free slots of their executors."""
        for (index, worker_class), held in self._held.items():
            free = self.targets[index].free_slots().get(worker_class, 0)
            while held and free > 0:
                self.targets[index].submit(held.pop(0))
                free -= 1

    def grow_now(self, sink: JobSink, job_id: str, request: Mapping[str, Any]) -> str | None:
        """Add a child node for a running job; None when done, else why it was refused."""
        if self.on_grow is None:
            return "this run cannot grow its graph"
        return self.on_grow(sink, job_id, request)

    def grow(self, sink: JobSink, job_id: str, request: Mapping[str, Any]) -> None:
        """Apply a job's request to add a child; remember a refusal to fail the job."""
        reason = self.grow_now(sink, job_id, request)
        if reason is not None:
            self._refused[job_id] = f"add_child refused: {reason}"
            sink.job_log(job_id, "ERROR", self._refused[job_id])

    def outcome(self, job_id: str, result: JobResult) -> JobResult:
        """The job's result, failed if one of its add_child requests was refused."""
        refused = self._refused.pop(job_id, None)
        if refused is not None and result.outcome is Outcome.SUCCESS:
            return JobResult(Outcome.ERROR, result.retval, refused, result.stats)
        return result


class _WatchingSink:
    """The sink the inner executor and the external queue report to.

    It watches what they report, then forwards it to the head.
    """

    def __init__(self, owner: RoutingExecutor, sink: JobSink) -> None:
        self.owner = owner
        self.sink = sink

    def grow_now(self, job_id: str, request: Mapping[str, Any]) -> str | None:
        """Add a child node for the running job ``job_id`` (see :data:`Grow`)."""
        return self.owner.grow_now(self.sink, job_id, request)

    def job_started(self, job_id: str, worker: str, host: str) -> None:
        self.sink.job_started(job_id, worker, host)
        if self.owner.on_started is not None:
            self.owner.on_started(job_id)

    def job_status(self, job_id: str, key: str, value: Any) -> None:
        if key == ADD_CHILD_KEY and isinstance(value, Mapping):
            self.owner.grow(self.sink, job_id, value)
        else:
            self.sink.job_status(job_id, key, value)

    def job_log(self, job_id: str, level: str, message: str) -> None:
        self.sink.job_log(job_id, level, message)

    def job_finished(self, job_id: str, result: JobResult) -> None:
        self.owner._external_jobs.discard(job_id)
        self.sink.job_finished(job_id, self.owner.outcome(job_id, result))
        self.owner.release_held()

    def job_lost(self, job_id: str, reason: str) -> None:
        self.owner._external_jobs.discard(job_id)
        self.sink.job_lost(job_id, reason)
        self.owner.release_held()
