"""Ready-job selection and worker-slot accounting (step 3, "Dispatch", of the path of a
pebble in docs/architecture.md).

Among ready jobs of one worker class: highest priority first, then the job of the
oldest pebble, then FIFO. A node's jobs wait while its ``max_parallel`` is reached or
one of its ``restrictions`` does not hold; a retried job waits until its
``not_before``. Waiting jobs are never dropped.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

from cryoflow.engine.records import JobSpec
from cryoflow.errors import ExprError
from cryoflow.graph.expr import Restriction
from cryoflow.graph.instances import base_name
from cryoflow.graph.model import Graph, WorkerClass

StatusLookup = Callable[[str, str], Any]
"""``(channel, param)`` → the latest status value, or None."""


class Dispatcher:
    """Holds queued jobs per worker class and node, and hands out the best ready one."""

    def __init__(self, graph: Graph, status: StatusLookup | None = None) -> None:
        self.graph = graph
        self._status: StatusLookup = status or (lambda channel, param: None)
        self._seq = count()
        self._ready: dict[WorkerClass, dict[str, list[tuple[int, int, int, JobSpec]]]] = (
            defaultdict(dict))
        self._delayed: list[tuple[float, int, JobSpec]] = []
        self._running: dict[str, str] = {}
        self._running_per_node: dict[str, int] = defaultdict(int)
        self._queued_per_node: dict[str, int] = defaultdict(int)
        self._cancelled: set[str] = set()
        self._current: dict[str, JobSpec] = {}
        """The spec of each queued job id; a heap entry holding another is stale."""
        self._queued = 0

    def __len__(self) -> int:
        """Jobs queued (ready or delayed), not running."""
        return self._queued

    @property
    def running(self) -> int:
        return len(self._running)

    def add(self, job: JobSpec, now: float) -> None:
        """Queue ``job``; it becomes ready at its ``not_before``.

        A job id is queued once: adding it again (cancelled or not) replaces its spec.
        """
        self._cancelled.discard(job.id)
        if self._current.setdefault(job.id, job) is not job:
            self._current[job.id] = job  # the entry already in the heap is now stale
        else:
            self._queued += 1
            self._queued_per_node[base_name(job.node)] += 1
        if job.not_before > now:
            heapq.heappush(self._delayed, (job.not_before, next(self._seq), job))
        else:
            self._push(job)

    def cancel(self, job_id: str) -> None:
        """Drop a queued job (lazily: it is skipped when it reaches the top)."""
        self._cancelled.add(job_id)

    def next_job(self, worker_class: WorkerClass, now: float,
                 accept: Callable[[JobSpec], bool] | None = None) -> JobSpec | None:
        """Pop the best ready job of ``worker_class`` and mark it running, or None.

        With ``accept``, None also when the best job is not accepted: the job stays
        first in line (no job of lower rank is taken in its place).
        """
        self._release_delayed(now)
        queues = self._ready.get(worker_class)
        while queues:
            best = self._best_node(queues)
            if best is None:
                return None
            job = queues[best][0][-1]
            stale = self._current.get(job.id) is not job
            cancelled = job.id in self._cancelled
            if not (stale or cancelled) and accept is not None and not accept(job):
                return None
            heapq.heappop(queues[best])
            if not queues[best]:
                del queues[best]
            if stale:
                continue
            del self._current[job.id]
            self._queued -= 1
            self._queued_per_node[base_name(job.node)] -= 1
            if cancelled:
                self._cancelled.discard(job.id)
                continue
            self._running[job.id] = base_name(job.node)
            self._running_per_node[base_name(job.node)] += 1
            return job
        return None

    def finished(self, job_id: str) -> None:
        """A running job ended (any outcome): free its node's parallel slot."""
        node = self._running.pop(job_id, None)
        if node is not None:
            self._running_per_node[node] -= 1

    def node_load(self, node: str) -> tuple[int, int]:
        """``(queued, running)`` jobs of a node (queued includes cancelled ones not yet
        reached and retries waiting for their delay)."""
        return self._queued_per_node[node], self._running_per_node[node]

    def next_wakeup(self) -> float | None:
        """When the earliest delayed job becomes ready."""
        return self._delayed[0][0] if self._delayed else None

    def held(self) -> dict[str, str]:
        """Nodes whose queued ready jobs a restriction holds, with the reason."""
        found: dict[str, str] = {}
        for queues in self._ready.values():
            for node in queues:
                reason = self._restriction_hold(self.graph.nodes[base_name(node)].restrictions)
                if reason:
                    found[base_name(node)] = reason
        return found

    def waiting_reasons(self) -> Iterator[str]:
        """Why queued jobs are held, for ``ccstatus`` and the log."""
        for queues in self._ready.values():
            for node in queues:
                reason = self._blocked(node)
                if reason:
                    yield f"node '{node}': {reason}"

    # ------------------------------------------------------------------ internals

    def _push(self, job: JobSpec) -> None:
        queues = self._ready[job.worker_class]
        entry = (-job.priority, job.pebble_id, next(self._seq), job)
        heapq.heappush(queues.setdefault(job.node, []), entry)

    def _release_delayed(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job = heapq.heappop(self._delayed)
            self._push(job)

    def _best_node(self, queues: dict[str, list[tuple[int, int, int, JobSpec]]]) -> str | None:
        best: tuple[int, int, int] | None = None
        chosen = None
        for node, heap in queues.items():
            key = heap[0][:3]
            if (best is None or key < best) and not self._blocked(node):
                best, chosen = key, node
        return chosen

    def _blocked(self, node: str) -> str | None:
        spec = self.graph.nodes[base_name(node)]
        if spec.max_parallel is not None:
            if self._running_per_node[spec.name] >= spec.max_parallel:
                return f"max_parallel {spec.max_parallel} reached"
        return self._restriction_hold(spec.restrictions)

    def _restriction_hold(self, rules: tuple[Restriction, ...]) -> str | None:
        for rule in rules:
            try:
                held = rule.holds(self._status(rule.channel, rule.param))
            except ExprError as exc:
                return str(exc)
            if not held:
                return f"restriction {rule.text} does not hold"
        return None
