"""An executor that runs jobs in threads of the head's own process.

For ``Workflow.run(inline=True)``, tests of the head, and tiny graphs where starting
worker processes costs more than the work. Jobs share the head's interpreter, so a
job that crashes the interpreter takes the head with it: use the local executor for
real work. Cancel sets the job's cancel event; a thread cannot be killed, so a job
that ignores it runs to its end (its result is then discarded).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.runtime import run_task


class InlineExecutor:
    """Runs tasks in threads: ``slots`` per worker class."""

    def __init__(self, *, slots: Mapping[WorkerClass, int] | None = None) -> None:
        default = {WorkerClass.NORMAL: 2, WorkerClass.ADMIN: 1}
        self._capacity = dict(default if slots is None else slots)
        self._busy: dict[WorkerClass, int] = {c: 0 for c in self._capacity}
        self._cancel: dict[str, threading.Event] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: JobSink | None = None

    async def start(self, sink: JobSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(
            max(1, sum(self._capacity.values())), thread_name_prefix="cryoflow-inline"
        )

    async def stop(self, timeout_s: float = 10.0) -> None:
        for event in self._cancel.values():
            event.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def capacity(self) -> Mapping[WorkerClass, int]:
        return dict(self._capacity)

    def free_slots(self) -> Mapping[WorkerClass, int]:
        return {c: n - self._busy[c] for c, n in self._capacity.items()}

    def submit(self, task: Task) -> None:
        if self._pool is None or self.free_slots().get(task.worker_class, 0) <= 0:
            raise ValueError(f"no free {task.worker_class.value} slot for job {task.id}")
        self._busy[task.worker_class] += 1
        cancel = self._cancel[task.id] = threading.Event()
        self._pool.submit(self._run, task, cancel)

    def runs(self, job_id: str) -> bool:
        """True from ``submit`` of ``job_id`` until its result is handed to the sink."""
        return job_id in self._cancel

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        event = self._cancel.get(job_id)
        if event is not None:
            event.set()

    def _run(self, task: Task, cancel: threading.Event) -> None:
        name = f"inline-{threading.get_ident()}"
        self._report("job_started", task.id, name, "localhost")
        handle = WorkerHandle(
            name,
            on_status=lambda job, key, value: self._report("job_status", job, key, value),
            on_log=lambda job, level, msg: self._report("job_log", job, level, msg),
        )
        handle.bind(task.id, task.pebble_id)
        try:
            result = run_task(task, handle, cancel)
        except Exception as exc:  # the runtime reports module errors itself
            result = JobResult(Outcome.ERROR, error=f"{type(exc).__name__}: {exc}")
        self._finish(task, result)

    def _finish(self, task: Task, result: JobResult) -> None:
        def done() -> None:
            self._busy[task.worker_class] -= 1
            self._cancel.pop(task.id, None)
            assert self._sink is not None
            self._sink.job_finished(task.id, result)

        assert self._loop is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(done)

    def _report(self, method: str, *args: Any) -> None:
        assert self._loop is not None and self._sink is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(getattr(self._sink, method), *args)
