"""What the head gathers between two commits, and the log lines it writes itself.

Inputs, executors and the API report to the head through its methods; each report is
kept as one of these named records until the next tick commits them all at once.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cryoflow.engine.records import Action, JobSpec, PebbleDone, PebbleOutcome, node_label
from cryoflow.workers.base import JobResult


@dataclass
class Offer:
    """An item an input offered; its future gets the pebble id once committed."""

    input_node: str
    item: Mapping[str, Any]
    future: asyncio.Future[int]
    idem_key: str | None = None
    seen_key: str | None = None


class JobStart(NamedTuple):
    job_id: str
    worker: str
    host: str


class JobReport(NamedTuple):
    job_id: str
    result: JobResult


class JobLoss(NamedTuple):
    job_id: str
    reason: str


class CancelRequest(NamedTuple):
    pebble_id: int
    reason: str


class StatusValue(NamedTuple):
    channel: str
    key: str
    value: Any


class LogLine(NamedTuple):
    """One job log line, in the column order of the store's log rows."""

    time: float
    level: str
    pebble_id: int | None
    job_id: str | None
    node: str | None
    message: str


@dataclass
class Pending:
    """Events gathered since the last tick."""

    offers: list[Offer] = field(default_factory=list)
    started: list[JobStart] = field(default_factory=list)
    results: list[JobReport] = field(default_factory=list)
    lost: list[JobLoss] = field(default_factory=list)
    cancels: list[CancelRequest] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    status: list[StatusValue] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.offers or self.started or self.results or self.lost or self.cancels
                    or self.retries or self.status or self.logs)


@dataclass
class RunCounts:
    """Pebbles finished by this head since it started."""

    completed: int = 0
    failed: int = 0
    accepted: int = 0


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def failure_line(job: JobSpec, result: JobResult, now: float) -> LogLine:
    """The log line of a failed attempt: its error and where it was raised, for cclog."""
    error = (result.error or result.outcome.value).strip().splitlines() or [""]
    frames = _FRAME.findall(str(result.stats.get("traceback") or ""))
    where = ""
    if frames:
        path, line, function = frames[-1]
        where = f" (at {os.path.basename(path)}:{line} in {function})"
    more = f" (+{len(error) - 1} more lines)" if len(error) > 1 else ""
    message = (f"{node_label(job.node, job.branch)} attempt {job.attempt} failed: "
               f"{error[0]}{more}{where}")
    return LogLine(now, "ERROR", job.pebble_id, None, job.node, message)


def pebble_failed(done: PebbleDone) -> str:
    """``pebble 7 failed at Wind, Wave[2]``: the notice of a pebble that ended failed."""
    return f"pebble {done.pebble_id} failed at {', '.join(done.failed_nodes)}"


def pebble_failed_lines(actions: list[Action], now: float) -> list[LogLine]:
    """A WARNING line for each pebble these actions finish as failed."""
    return [LogLine(now, "WARNING", action.pebble_id, None, None, pebble_failed(action))
            for action in actions
            if isinstance(action, PebbleDone) and action.outcome is PebbleOutcome.FAILED]
