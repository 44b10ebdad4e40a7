"""What ``CryoCore.API`` offers modules: logs, status, config and the stop event.

Inside a job (the thread that runs ``process_task``) ``get_log`` and ``get_status``
write to that job's log and status, and ``api_stop_event`` is set when the job is
cancelled or the process stops; outside a job they go to Python logging and to a
status that is kept but not published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from cryoflow.workers.handle import JobStatus, WorkerConfig, current_handle, current_stop_event

LOG_LEVELS = {"CRITICAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
              "INFO": logging.INFO, "DEBUG": logging.DEBUG}

_process_stop = threading.Event()
_configs: dict[tuple[str | None, str], WorkerConfig] = {}
_statuses: dict[str, JobStatus] = {}
_lock = threading.Lock()


class StopEvent:
    """``api_stop_event``: set for the whole process by :func:`shutdown`, and in a job's
    thread while that job is being cancelled."""

    def is_set(self) -> bool:
        job = current_stop_event()
        return _process_stop.is_set() or (job is not None and job.is_set())

    isSet = is_set  # noqa: N815 - the old threading spelling some modules use

    def set(self) -> None:
        _process_stop.set()

    def clear(self) -> None:
        _process_stop.clear()

    def wait(self, timeout: float | None = None) -> bool:
        job = current_stop_event()
        if job is None:
            return _process_stop.wait(timeout)
        step = 0.1 if timeout is None else min(0.1, timeout)
        waited = 0.0
        while not self.is_set():
            if timeout is not None and waited >= timeout:
                return False
            job.wait(step)
            waited += step
        return True


api_stop_event = StopEvent()


class _JobLog(logging.LoggerAdapter):
    """A logger that writes to the running job's log, else to Python logging."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        handle = current_handle()
        if handle is not None:
            handle.log.log(level, msg, *args, **kwargs)
        else:
            self.logger.log(level, msg, *args, **kwargs)


def get_log(name: str) -> logging.LoggerAdapter:
    """A logger named ``name`` (records of a job go to that job's log)."""
    return _JobLog(logging.getLogger(f"cryoflow.compat.{name}"), {})


def get_status(name: str) -> Any:
    """The running job's status, or a status kept for ``name`` outside jobs."""
    handle = current_handle()
    if handle is not None:
        return handle.status
    with _lock:
        if name not in _statuses:
            _statuses[name] = JobStatus(lambda key, value: None)
        return _statuses[name]


def get_config(name: str | None = None, version: str = "default") -> WorkerConfig:
    """A config object for ``name`` (``CryoCloud.Worker`` has ``tempdir`` and ``datadir``)."""
    handle = current_handle()
    if handle is not None and name in (None, "CryoCloud.Worker"):
        return handle.cfg
    with _lock:
        key = (name, version)
        if key not in _configs:
            _configs[key] = WorkerConfig()
        return _configs[key]


def set_config(name: str, values: Mapping[str, Any], version: str = "default") -> None:
    """Give the config ``name`` these values (for tests and head-side code)."""
    get_config(name, version).update(values)


def set_log_level(level: str) -> None:
    logging.getLogger("cryoflow.compat").setLevel(LOG_LEVELS.get(level.upper(), logging.INFO))


def shutdown() -> None:
    """Set ``api_stop_event`` for the whole process."""
    _process_stop.set()


def reset() -> None:
    """Clear the process-wide stop (used between runs in one process)."""
    _process_stop.clear()
