"""The ``worker`` object a module's ``process_task(worker, task)`` receives.

It offers exactly what CryoCloud modules use: ``worker.status[key] = value`` publishes a
status value of the running job (``progress`` 0..100 drives progress bars),
``worker.log`` is a logger whose records are published with their level and carry the
job and pebble ids, and ``worker.name``, ``worker.host``, ``worker.job_id`` describe
where the job runs. Publishing goes through plain callbacks, so the same handle serves
the local worker process (which sends the values down its pipe), the Dask worker and
tests (which collect them in lists).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

StatusCallback = Callable[[str, str, Any], None]
"""Called as ``(job_id, key, value)`` for every status value set by a module."""
LogCallback = Callable[[str, str, str], None]
"""Called as ``(job_id, level, message)`` for every log record of a module."""


class JobStatus(MutableMapping[str, Any]):
    """``worker.status``: a dict whose item assignment publishes the value.

    Values are kept, so a module may read back what it set. Deleting a key only
    forgets it locally. Assignments made while no job is bound are kept but not
    published.
    """

    def __init__(self, publish: Callable[[str, Any], None]) -> None:
        self._values: dict[str, Any] = {}
        self._publish = publish

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value
        self._publish(str(key), value)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def reset(self) -> None:
        """Forget every value (a new job starts with an empty status)."""
        self._values.clear()


class _PublishingHandler(logging.Handler):
    """Hands each formatted record to the log callback with its job id."""

    def __init__(self, publish: LogCallback) -> None:
        super().__init__(logging.DEBUG)
        self._publish = publish
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return
        try:
            message = self.format(record)
        except Exception:  # a bad format string in a module must not kill the job
            message = f"{record.msg!r} (unformattable arguments {record.args!r})"
        self._publish(job_id, record.levelname, message)


class WorkerHandle:
    """What ``process_task`` gets as ``worker``; bound to one job at a time.

    ``on_status(job_id, key, value)`` and ``on_log(job_id, level, message)`` are called
    synchronously from the thread that sets the value or logs. The runtime calls
    :meth:`bind` before and after each job.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str | None = None,
        on_status: StatusCallback | None = None,
        on_log: LogCallback | None = None,
    ) -> None:
        self.name = name
        self.host = host or socket.gethostname()
        self.job_id: str | None = None
        self.staging_config: Any = None
        """The job's :class:`~cryoflow.staging.config.StagingConfig` (S3, ssh, http)."""
        self.pebble_id: int | None = None
        self._on_status = on_status
        self.status = JobStatus(self._publish_status)
        self._ids: dict[str, Any] = {"job_id": None, "pebble_id": None, "worker": name}
        logger = logging.Logger(f"cryoflow.job.{name}", logging.DEBUG)
        logger.propagate = False
        if on_log is not None:
            logger.addHandler(_PublishingHandler(on_log))
        self.log = logging.LoggerAdapter(logger, self._ids)

    def bind(self, job_id: str | None, pebble_id: int | None = None) -> None:
        """Attach the handle to a job, or detach it with ``None``; status starts empty."""
        self.job_id, self.pebble_id = job_id, pebble_id
        self._ids["job_id"], self._ids["pebble_id"] = job_id, pebble_id
        self.status.reset()

    def add_child(self, spec: Mapping[str, Any], insert: bool = False) -> None:
        """Grow the graph from this job: add ``spec`` (a function spec) as a child of
        this job's node, or with ``insert`` between it and its children. The head checks
        the request; a refused one fails the job with the reason."""
        self.status["cryoflow.add_child"] = {"spec": dict(spec), "insert": bool(insert)}

    def _publish_status(self, key: str, value: Any) -> None:
        if self._on_status is not None and self.job_id is not None:
            self._on_status(self.job_id, key, value)

    def __repr__(self) -> str:
        return f"<WorkerHandle {self.name} on {self.host} job={self.job_id}>"
