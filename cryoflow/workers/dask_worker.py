"""What runs inside a Dask worker for cryoflow's Dask executor (:mod:`.dask`).

:func:`run_dask_task` runs one job with the shared job runtime and sends what it
reports as Dask events; :class:`JobRegistry` (a worker plugin) holds the cancel events
of the jobs running in one worker, for :func:`cancel_on_worker`; :func:`no_dask_retries`
is run on the scheduler so that a worker's death fails its task at once. Dask calls
these by reference, so every worker (and the scheduler) needs cryoflow importable.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from distributed import WorkerPlugin, get_worker

from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.lineproto import dumps, task_from_json
from cryoflow.workers.runtime import run_task

PLUGIN_NAME = "cryoflow-jobs"
NODE_ENV = "CRYOFLOW_NODE_NAME"


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
