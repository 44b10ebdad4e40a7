"""The ``worker`` object a module's ``process_task(worker, task)`` receives.

It offers what CryoCloud modules use, as cryoflow's own implementation:

- ``worker.status[key] = value`` publishes a status value of the running job
  (``progress`` 0..100 drives progress bars). ``worker.status[key]`` is a
  :class:`StatusValue` with ``set_value``, ``get_value``, ``inc`` and ``dec``, so
  ``worker.status["progress"].get_value()`` works as it did in CryoCloud; it also
  compares and converts like its value. ``worker.status.new(key, initial_value=...)``
  creates a value; ``downsample`` and ``set_expire_time`` are accepted and change
  nothing (every value is published, and values end with the job).
- ``worker.log`` is a logger whose records are published with their level and carry
  the job and pebble ids.
- ``worker.stop_event`` (also ``worker._stop_event``, the name CryoCloud modules read)
  is set when the running job is cancelled or the worker stops; a job's
  ``cancel_event`` argument is the same event.
- ``worker.cfg`` is the worker's configuration (``tempdir``, ``datadir``), read with
  ``cfg["tempdir"]`` or ``cfg.get("tempdir")``; ``worker.get_arg(task, name, default)``
  reads an argument and says which one is missing.
- ``worker.name``, ``worker.wid``, ``worker.host``, ``worker.job_id`` describe where the
  job runs.

Publishing goes through plain callbacks, so the same handle serves the local worker
process (which sends the values down its pipe), the Dask worker, containers and tests
(which collect them in lists).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

StatusCallback = Callable[[str, str, Any], None]
"""Called as ``(job_id, key, value)`` for every status value set by a module."""
LogCallback = Callable[[str, str, str], None]
"""Called as ``(job_id, level, message)`` for every log record of a module."""

_MISSING = object()
_local = threading.local()


def current_stop_event() -> threading.Event | None:
    """The stop event of the job this thread runs, or None outside a job."""
    return getattr(_local, "stop_event", None)


def current_handle() -> WorkerHandle | None:
    """The handle of the job this thread runs, or None outside a job."""
    return getattr(_local, "handle", None)


@functools.total_ordering
class StatusValue:
    """One status value of the running job: ``worker.status[key]``.

    ``set_value`` publishes; ``get_value`` reads back (None until set, ``progress``
    starts at 0). It compares, hashes, formats and converts like its value, so code
    that treats ``worker.status[key]`` as the plain value keeps working.
    """

    __slots__ = ("_key", "_owner", "_value")

    def __init__(self, owner: JobStatus, key: str, value: Any = None) -> None:
        self._owner, self._key, self._value = owner, key, value

    @property
    def name(self) -> str:
        return self._key

    def get_value(self) -> Any:
        return self._value

    def set_value(self, value: Any, force_update: bool = False) -> None:
        """Set and publish ``value`` (``force_update`` is accepted: every set publishes)."""
        self._value = value
        self._owner.publish(self._key, value)

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (a value never set counts as 0)."""
        self.set_value((self._value or 0) + amount)

    def dec(self, amount: float = 1) -> None:
        self.set_value((self._value or 0) - amount)

    def downsample(self, num_changes: int | None = None, cooldown: float | None = None) -> None:
        """Accepted for CryoCloud modules; cryoflow publishes every change."""

    def set_expire_time(self, seconds: float) -> None:
        """Accepted for CryoCloud modules; status values end with the job."""

    def __eq__(self, other: object) -> bool:
        other = other.get_value() if isinstance(other, StatusValue) else other
        return bool(self._value == other)

    def __lt__(self, other: object) -> bool:
        other = other.get_value() if isinstance(other, StatusValue) else other
        return bool(self._value < other)

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __float__(self) -> float:
        return float(self._value)

    def __int__(self) -> int:
        return int(self._value)

    def __index__(self) -> int:
        return int(self._value)

    def __str__(self) -> str:
        return str(self._value)

    def __format__(self, spec: str) -> str:
        return format(self._value, spec)

    def __repr__(self) -> str:
        return f"<StatusValue {self._key}={self._value!r}>"


class JobStatus(MutableMapping[str, Any]):
    """``worker.status``: assigning an item publishes it; reading gives a :class:`StatusValue`.

    Reading a key never set creates it (value None; ``progress`` starts at 0) without
    publishing anything, as CryoCloud's status did. ``key in status`` and iteration
    see only keys that were set. Assignments made while no job is bound are kept but
    not published.
    """

    def __init__(self, publish: Callable[[str, Any], None]) -> None:
        self._items: dict[str, StatusValue] = {}
        self._set: set[str] = set()
        self._publish = publish

    def publish(self, key: str, value: Any) -> None:
        self._set.add(key)
        self._publish(key, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, StatusValue):
            value = value.get_value()
        self[key].set_value(value)

    def __getitem__(self, key: str) -> StatusValue:
        key = str(key)
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = StatusValue(self, key, 0 if key == "progress" else None)
        return item

    def __delitem__(self, key: str) -> None:
        if key not in self._set:
            raise KeyError(key)
        self._set.discard(key)
        self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __iter__(self) -> Iterator[str]:
        return iter([k for k in self._items if k in self._set])

    def __len__(self) -> int:
        return len(self._set)

    def get(self, key: str, default: Any = None) -> Any:
        """The plain value of ``key`` if it was set, else ``default``."""
        return self._items[key].get_value() if key in self._set else default

    def values_dict(self) -> dict[str, Any]:
        """Every value that was set, as plain values."""
        return {k: self._items[k].get_value() for k in self}

    def new(self, key: str, expire_time: float | None = None,
            initial_value: Any = _MISSING) -> StatusValue:
        """Create ``key`` (publishing ``initial_value`` when one is given)."""
        item = self[key]
        if initial_value is not _MISSING:
            item.set_value(initial_value)
        return item

    def reset(self) -> None:
        """Forget every value (a new job starts with an empty status)."""
        self._items.clear()
        self._set.clear()


class WorkerConfig(MutableMapping[str, Any]):
    """``worker.cfg``: the worker's settings, read like CryoCloud's config object.

    ``tempdir`` (``CRYOFLOW_TEMPDIR`` or the system's temporary folder) and ``datadir``
    (``/``) are always there. ``set_default`` adds a value only where none is set;
    ``require`` raises a :class:`KeyError` naming every missing key.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {
            "tempdir": os.environ.get("CRYOFLOW_TEMPDIR") or tempfile.gettempdir(),
            "datadir": "/",
        }
        self._values.update(values or {})

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"worker config has no {key!r} (it has {', '.join(self)})") from None

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get_value(self, key: str) -> Any:
        return self._values.get(key)

    def set_default(self, key: str, value: Any) -> None:
        self._values.setdefault(key, value)

    def require(self, keys: list[str]) -> None:
        missing = [k for k in keys if k not in self._values]
        if missing:
            raise KeyError(f"worker config lacks {', '.join(missing)}")


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
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.wid = name
        self.host = host or socket.gethostname()
        self.job_id: str | None = None
        self.staging_config: Any = None
        """The job's :class:`~cryoflow.staging.config.StagingConfig` (S3, ssh, http)."""
        self.pebble_id: int | None = None
        self.cfg = WorkerConfig(config)
        self._on_status = on_status
        self.status = JobStatus(self._publish_status)
        self._idle_stop = threading.Event()
        self._stop = self._idle_stop
        self._ids: dict[str, Any] = {"job_id": None, "pebble_id": None, "worker": name}
        logger = logging.Logger(f"cryoflow.job.{name}", logging.DEBUG)
        logger.propagate = False
        if on_log is not None:
            logger.addHandler(_PublishingHandler(on_log))
        self.log = logging.LoggerAdapter(logger, self._ids)

    def bind(
        self, job_id: str | None, pebble_id: int | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        """Attach the handle to a job, or detach it with ``None``; status starts empty.

        ``stop_event`` is the job's cancel event: :attr:`stop_event` and CryoCloud's
        ``CryoCore.API.api_stop_event`` (in this thread) follow it while the job runs.
        """
        self.job_id, self.pebble_id = job_id, pebble_id
        self._ids["job_id"], self._ids["pebble_id"] = job_id, pebble_id
        self.status.reset()
        if job_id is None:
            self._stop = self._idle_stop
            _local.stop_event = _local.handle = None
            return
        _local.handle = self
        if stop_event is not None:
            self._stop = stop_event
            _local.stop_event = stop_event

    @property
    def stop_event(self) -> threading.Event:
        """Set when the running job is cancelled or the worker stops."""
        return self._stop

    @property
    def _stop_event(self) -> threading.Event:  # the name CryoCloud modules read
        return self._stop

    def get_arg(self, task: Mapping[str, Any], name: str, default: Any = _MISSING) -> Any:
        """``task["args"][name]``, else ``default``; without a default a missing arg raises."""
        args = task.get("args") or {}
        if name in args:
            return args[name]
        if default is _MISSING:
            raise KeyError(f"missing argument {name!r} (the job has {', '.join(args) or 'none'})")
        return default

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
