"""The executor interface: how the head hands jobs to workers and hears back.

The head owns all state. An executor only runs the :class:`Task` it is given and
reports through the :class:`JobSink` it was started with, always on the head's event
loop thread. Every executor (local processes, Dask, Docker, Kubernetes) runs the same
job runtime (:mod:`cryoflow.workers.runtime`), so a module behaves the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, Protocol

from cryoflow.graph.model import Outcome, WorkerClass, empty_map

DEFAULT_MAX_RESULT_BYTES = 16 * 1024 * 1024
"""The default cap on a module's result, as JSON (16 MiB)."""


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one job, self-contained and JSON-friendly."""

    id: str
    pebble_id: int
    node: str
    module: str
    module_ref: str | None
    args: Mapping[str, Any]
    worker_class: WorkerClass = WorkerClass.NORMAL
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=empty_map)
    loop: str | None = None
    post: tuple[Mapping[str, Any], ...] = ()
    timeout_s: float | None = None
    workdir: str | None = None
    workflow: str = ""
    ccnode: str | None = None
    docker: str | None = None
    image: str | None = None
    volumes: tuple[tuple[str, str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=empty_map)
    module_paths: tuple[str, ...] = ()
    staging: Mapping[str, Any] = field(default_factory=empty_map)
    """The ``staging`` part of the config tree (S3 endpoints, ssh keys, limits)."""
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    """The most a module's result may take as JSON (``results.max_bytes`` in the config)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from their defaults: what a worker needs to be sent."""
        found = {}
        for name, default in _task_defaults():
            value = getattr(self, name)
            if default is _REQUIRED or value != default:
                found[name] = value
        return found

    def to_json(self) -> str:
        """Serialize for a pipe or a remote worker (never pickle)."""
        return json.dumps(self.to_dict(), default=_plain, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """The inverse of :meth:`to_dict`, from parsed JSON (lists back into tuples)."""
        if "worker_class" in data:
            data["worker_class"] = WorkerClass(data["worker_class"])
        for name in ("post", "module_paths"):
            if name in data:
                data[name] = tuple(data[name])
        if "volumes" in data:
            data["volumes"] = tuple(tuple(v) for v in data["volumes"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Task:
        return cls.from_dict(json.loads(text))


_REQUIRED = object()


@cache
def _task_defaults() -> tuple[tuple[str, Any], ...]:
    """``(field, default)`` of every Task field; ``_REQUIRED`` where there is none."""
    found = []
    for spec in fields(Task):
        if spec.default is not MISSING:
            found.append((spec.name, spec.default))
        elif spec.default_factory is not MISSING:
            found.append((spec.name, spec.default_factory()))
        else:
            found.append((spec.name, _REQUIRED))
    return tuple(found)


def _plain(value: Any) -> Any:
    """JSON for read-only mappings and other containers the records hold."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


@dataclass(frozen=True)
class JobResult:
    """What one run of a job produced."""

    outcome: Outcome
    retval: Any = None
    error: str | None = None
    stats: Mapping[str, Any] = field(default_factory=empty_map)


class JobSink(Protocol):
    """Receives what executors report. Called on the head's event loop thread."""

    def job_started(self, job_id: str, worker: str, host: str) -> None: ...

    def job_status(self, job_id: str, key: str, value: Any) -> None: ...

    def job_log(self, job_id: str, level: str, message: str) -> None: ...

    def job_finished(self, job_id: str, result: JobResult) -> None: ...

    def job_lost(self, job_id: str, reason: str) -> None:
        """The job will not report: its worker died or was replaced. Retry it."""


class Executor(Protocol):
    """Runs tasks on some kind of worker.

    Contract: ``submit`` is only called for a class with a free slot (see
    ``free_slots``); each submitted task ends with exactly one ``job_finished`` or
    ``job_lost`` on the sink, unless it was cancelled and the executor stopped.
    ``cancel`` sets the job's cancel event, and kills it after ``grace_s``.
    """

    async def start(self, sink: JobSink) -> None: ...

    async def stop(self, timeout_s: float = 10.0) -> None: ...

    def free_slots(self) -> Mapping[WorkerClass, int]: ...

    def capacity(self) -> Mapping[WorkerClass, int]: ...

    def submit(self, task: Task) -> None: ...

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None: ...
