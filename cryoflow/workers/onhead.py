"""``runOnHead``: jobs of such nodes run in threads of the head's own process.

:class:`OnHeadExecutor` sits in front of the run's executor: tasks of the nodes named
in ``on_head`` go to an :class:`~cryoflow.workers.inline.InlineExecutor` in the head,
every other task to ``inner``. Limits (docs/migrating.md): the module is imported into
the head (it must be importable there, with ``--modules``); a job shares the head's
interpreter, so one that crashes the interpreter takes the head with it and one that
ignores its cancel event runs to its end; ``docker``/``image``, ``ccnode`` pinning and
per-worker memory limits do not apply; and the head still dispatches such a job only
when a worker slot of its class is free (it does not take that slot).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from cryoflow.graph.instances import base_name
from cryoflow.graph.model import Graph, WorkerClass
from cryoflow.workers.base import Executor, JobSink, Task
from cryoflow.workers.inline import InlineExecutor

HEAD_THREADS = 64
"""Most runOnHead jobs of one worker class that run at once; more run on workers."""


class OnHeadExecutor:
    """Routes runOnHead nodes' tasks to threads of the head (see the module docstring)."""

    def __init__(self, inner: Executor, on_head: Collection[str]) -> None:
        self.inner = inner
        self.on_head = frozenset(on_head)
        self.local = InlineExecutor(slots={c: HEAD_THREADS for c in WorkerClass})

    async def start(self, sink: JobSink) -> None:
        await self.inner.start(sink)
        await self.local.start(sink)

    async def stop(self, timeout_s: float = 10.0) -> None:
        await self.local.stop(timeout_s)
        await self.inner.stop(timeout_s)

    def capacity(self) -> Mapping[WorkerClass, int]:
        return self.inner.capacity()

    def free_slots(self) -> Mapping[WorkerClass, int]:
        return self.inner.free_slots()

    def submit(self, task: Task) -> None:
        if base_name(task.node) in self.on_head and self.local.free_slots()[task.worker_class]:
            self.local.submit(task)
        else:
            self.inner.submit(task)

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        if self.local.runs(job_id):
            self.local.cancel(job_id, grace_s)
        else:
            self.inner.cancel(job_id, grace_s)

    def __getattr__(self, name: str) -> object:  # routing helpers of the inner executor
        return getattr(self.inner, name)


def with_on_head(executor: Executor, graph: Graph) -> Executor:
    """``executor``, behind an :class:`OnHeadExecutor` when the graph has runOnHead nodes."""
    on_head = [n.name for n in graph if n.run_on_head and not n.is_input]
    return OnHeadExecutor(executor, on_head) if on_head else executor
