"""Writes of one store transaction: :class:`Batch`, and the statements it runs.

Contract: a :class:`Batch` only exists inside :meth:`Store.batch
<cryoflow.store.sqlite.Store.batch>`, which commits or rolls back all of its writes
together. Each engine action kind is written with one ``executemany``; event rows are
buffered and written in call order just before the commit. No method reads a row back
in the hot path (job queued, node changed, job started or finished).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from cryoflow.engine.records import (
    Action,
    CancelJob,
    NodeChanged,
    NodeRemoved,
    PebbleDone,
    PebbleReopened,
    QueueJob,
    branch_key,
)
from cryoflow.store import codec

INSERT_PEBBLE = (
    "INSERT INTO pebbles(id, input_node, item, created, idem_key, seen_key)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
FIND_IDEM = "SELECT id FROM pebbles WHERE idem_key = ?"
FIND_SEEN = "SELECT pebble_id FROM seen WHERE key = ?"
INSERT_SEEN = "INSERT INTO seen(key, pebble_id, ts) VALUES (?, ?, ?)"
UPSERT_NODE = (
    "INSERT OR REPLACE INTO nodes(pebble_id, node, branch, status, outcome, output, error,"
    " resolved_by, combined, attempts, lost, stats, branches)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_JOB = (
    "INSERT INTO jobs(id, pebble_id, node, branch, attempt, priority, worker_class, spec,"
    " not_before, created, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued')"
    " ON CONFLICT(id) DO NOTHING"
)
CANCEL_JOB = (
    "UPDATE jobs SET state = 'cancelled', finished = ?"
    " WHERE id = ? AND state IN ('queued', 'running')"
)
FINISH_PEBBLE = (
    "UPDATE pebbles SET state = 'done', outcome = ?, failed_nodes = ?, finished = ? WHERE id = ?"
)
DISPATCH_JOB = (
    "UPDATE jobs SET state = 'running', started = ? WHERE id = ? AND state = 'queued'"
)
START_JOB = (
    "UPDATE jobs SET started = ?, worker = ?, host = ? WHERE id = ? AND state = 'running'"
)
FINISH_JOB = (
    "UPDATE jobs SET state = 'done', outcome = ?, retval = ?, error = ?, stats = ?,"
    " worker = coalesce(?, worker), host = coalesce(?, host), finished = ?"
    " WHERE id = ? AND state <> 'done'"
)
RUNNING_JOBS = "SELECT id, pebble_id FROM jobs WHERE state = 'running' ORDER BY id"
LOSE_RUNNING = (
    "UPDATE jobs SET state = 'done', outcome = 'lost', error = ?, finished = ?"
    " WHERE state = 'running'"
)
DELETE_NODE = "DELETE FROM nodes WHERE pebble_id = ? AND node = ? AND branch = ?"
REOPEN_PEBBLE = (
    "UPDATE pebbles SET state = 'active', outcome = NULL, failed_nodes = NULL, finished = NULL"
    " WHERE id = ?"
)
PUT_CACHE = "INSERT OR REPLACE INTO cache(key, node, retval, ts) VALUES (?, ?, ?, ?)"
PUT_STATUS = "INSERT OR REPLACE INTO status(channel, key, value, ts) VALUES (?, ?, ?, ?)"
INSERT_LOG = (
    "INSERT INTO logs(ts, level, pebble_id, job_id, node, message) VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_EVENT = "INSERT INTO events(ts, kind, pebble_id, job_id, data) VALUES (?, ?, ?, ?, ?)"
HAS_SEEN = "SELECT 1 FROM seen WHERE key = ?"
LOST_REASON = "the head stopped while this job was running"


class Batch:
    """The writes of one transaction; get one from :meth:`Store.batch`, use it only
    inside that ``with`` block.

    Each pebble, job and node write also appends a compact row to ``events`` (the web
    view's resume cursor): pebble_added, job_queued, node_changed, job_cancelled,
    pebble_done, job_started, job_finished, job_lost, plus :meth:`add_event`. Status
    values and log lines add none. Event rows are written just before the commit, in
    call order.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._events: list[tuple[float, str, int | None, str | None, str | None]] = []
        self._held_sql = ""
        self._held: list[tuple[Any, ...]] = []

    def _hold(self, sql: str, row: tuple[Any, ...]) -> None:
        """Queue ``row`` for ``sql``; runs of the same statement go out as one executemany.

        Every other write or read releases the held rows first, so statements still
        take effect in call order.
        """
        if sql is not self._held_sql:
            self._release()
            self._held_sql = sql
        self._held.append(row)

    def _release(self) -> None:
        if self._held:
            self._conn.executemany(self._held_sql, self._held)
            self._held = []

    def add_pebble(
        self,
        input_node: str,
        item: Mapping[str, Any],
        *,
        now: float,
        pebble_id: int | None = None,
        idem_key: str | None = None,
        seen_key: str | None = None,
    ) -> tuple[int, bool]:
        """Store a new pebble; return ``(id, True)``.

        When ``idem_key`` or ``seen_key`` was stored before, nothing is written and the
        earlier pebble's id comes back as ``(id, False)``. ``pebble_id`` None lets the
        store pick ``max(id) + 1``. A ``seen_key`` is also recorded in ``seen``.
        """
        self._release()
        existing = self._existing(idem_key, seen_key)
        if existing is not None:
            return existing, False
        row = (pebble_id, input_node, codec.dumps(item), now, idem_key, seen_key)
        new_id = self._conn.execute(INSERT_PEBBLE, row).lastrowid
        assert new_id is not None
        if seen_key is not None:
            self._conn.execute(INSERT_SEEN, (seen_key, new_id, now))
        self._events.append((now, "pebble_added", new_id, None, None))
        return new_id, True

    def _existing(self, idem_key: str | None, seen_key: str | None) -> int | None:
        for sql, key in ((FIND_IDEM, idem_key), (FIND_SEEN, seen_key)):
            if key is not None:
                row = self._conn.execute(sql, (key,)).fetchone()
                if row is not None:
                    return int(row[0])
        return None

    def apply(self, actions: Iterable[Action], *, now: float) -> None:
        """Persist the engine's actions, each kind with one ``executemany``.

        NodeChanged upserts the node row (the last one for a key wins); QueueJob inserts
        a queued job unless its id exists; CancelJob cancels a job that is queued or
        running; PebbleDone closes the pebble with its outcome and failed nodes.
        """
        self._release()
        nodes: list[tuple[Any, ...]] = []
        jobs: list[tuple[Any, ...]] = []
        cancels: list[tuple[float, str]] = []
        dones: list[tuple[Any, ...]] = []
        removed: list[tuple[Any, ...]] = []
        reopened: list[tuple[int]] = []
        events = self._events
        for action in actions:
            if isinstance(action, NodeChanged):
                row = codec.node_row(action.pebble_id, action.node, action.branch, action.state)
                nodes.append(row)
                data = _node_event(row[1], row[2], row[3], row[4])
                events.append((now, "node_changed", action.pebble_id, None, data))
            elif isinstance(action, QueueJob):
                jobs.append(codec.job_row(action.job, now))
                events.append((now, "job_queued", action.job.pebble_id, action.job.id, None))
            elif isinstance(action, CancelJob):
                cancels.append((now, action.job_id))
                events.append((now, "job_cancelled", None, action.job_id, None))
            elif isinstance(action, PebbleDone):
                dones.append(_done_row(action, now))
                data = _outcome_event(action.outcome)
                events.append((now, "pebble_done", action.pebble_id, None, data))
            elif isinstance(action, NodeRemoved):
                key = (action.pebble_id, action.node, branch_key(action.branch))
                nodes = [row for row in nodes if row[:3] != key]
                removed.append(key)
                events.append((now, "node_removed", action.pebble_id, None, None))
            elif isinstance(action, PebbleReopened):
                reopened.append((action.pebble_id,))
                events.append((now, "pebble_reopened", action.pebble_id, None, None))
            else:
                raise TypeError(f"not a store action: {action!r}")
        self._write(removed, reopened, nodes, jobs, cancels, dones)

    def _write(self, *groups: list[Any]) -> None:
        statements = (DELETE_NODE, REOPEN_PEBBLE, UPSERT_NODE, INSERT_JOB, CANCEL_JOB,
                      FINISH_PEBBLE)
        for sql, rows in zip(statements, groups):
            if rows:
                self._conn.executemany(sql, rows)

    def jobs_dispatched(self, job_ids: Iterable[str], *, now: float) -> None:
        """Record that queued jobs are handed to workers: each becomes ``running``.

        Commit this before the hand-off: a job that a worker may execute is then
        always a recorded attempt, and a head that stops before its result comes
        closes it as ``lost`` at the next start (:meth:`requeue_running`), so the
        execution that follows is a new attempt. No event row is added.
        """
        self._release()
        self._conn.executemany(DISPATCH_JOB, [(now, job_id) for job_id in job_ids])

    def job_started(
        self, job_id: str, *, worker: str, host: str, now: float, write: bool = True
    ) -> None:
        """Note where a dispatched job runs: ``worker``@``host``, started ``now``.

        ``write=False`` only adds the event: the job's result, in the same batch,
        carries the worker and host (one write per job state change).
        """
        if write:
            self._hold(START_JOB, (now, worker, host, job_id))
        data = codec.dumps({"worker": worker, "host": host})
        self._events.append((now, "job_started", None, job_id, data))

    def job_finished(
        self,
        job_id: str,
        *,
        outcome: str,
        retval: Any,
        error: str | None,
        stats: Mapping[str, Any],
        now: float,
    ) -> None:
        """Record a job's result, unless the job is already done.

        A repeated report of the same job therefore changes nothing. ``retval`` None is
        stored as NULL, empty ``stats`` likewise.
        """
        retval_json = None if retval is None else codec.dumps(retval)
        stats_json = codec.dumps(stats) if stats else None
        worker, host = stats.get("worker") or None, stats.get("node") or None
        row = (outcome, retval_json, error, stats_json, worker, host, now, job_id)
        self._hold(FINISH_JOB, row)
        self._events.append((now, "job_finished", None, job_id, _outcome_event(outcome)))

    def requeue_running(self, *, now: float) -> list[str]:
        """At resume: close every job left ``running`` and return their ids.

        Each one becomes ``done`` with outcome ``lost``, so that it is neither listed by
        ``open_jobs`` nor counted again at a later restart. Call it in the resume batch
        and hand the ids to the engine as lost jobs there: its next attempts are then
        queued in the same transaction.
        """
        self._release()
        running = self._conn.execute(RUNNING_JOBS).fetchall()
        self._conn.execute(LOSE_RUNNING, (LOST_REASON, now))
        self._events.extend((now, "job_lost", pid, jid, None) for jid, pid in running)
        return [jid for jid, _ in running]

    def set_status(self, channel: str, key: str, value: Any, *, now: float) -> None:
        """Keep the latest ``value`` of ``channel``/``key`` (no event is added)."""
        self._release()
        self._conn.execute(PUT_STATUS, (channel, key, codec.dumps(value), now))

    def add_logs(
        self, rows: Iterable[tuple[float, str, int | None, str | None, str | None, str]]
    ) -> None:
        """Append ``(ts, level, pebble_id, job_id, node, message)`` log rows (no events)."""
        self._release()
        self._conn.executemany(INSERT_LOG, rows)

    def add_event(
        self,
        kind: str,
        *,
        now: float,
        pebble_id: int | None = None,
        job_id: str | None = None,
        data: Any = None,
    ) -> None:
        """Append one event of any ``kind`` to the event log."""
        encoded = None if data is None else codec.dumps(data)
        self._events.append((now, kind, pebble_id, job_id, encoded))

    def cache_put(self, key: str, *, node: str, retval: Any, now: float) -> None:
        """Remember a successful result under the hash of its node's cached inputs."""
        self._release()
        self._conn.execute(PUT_CACHE, (key, node, codec.dumps_opt(retval), now))

    def has_seen(self, key: str) -> bool:
        """Whether a pebble was stored with ``seen_key=key``."""
        self._release()
        return self._conn.execute(HAS_SEEN, (key,)).fetchone() is not None

    def flush(self) -> None:
        """Write held rows and buffered events (:meth:`Store.batch` calls it before COMMIT)."""
        self._release()
        if self._events:
            self._conn.executemany(INSERT_EVENT, self._events)
            self._events.clear()


@lru_cache(maxsize=4096)
def _node_event(node: str, branch: str, status: str, outcome: str | None) -> str:
    """Event data of a node change: ``{"node", "branch"?, "status", "outcome"?}``."""
    data = {"node": node, "status": status}
    if branch:
        data["branch"] = branch
    if outcome is not None:
        data["outcome"] = outcome
    return codec.dumps(data)


@lru_cache(maxsize=64)
def _outcome_event(outcome: str) -> str:
    """Event data of a finished job or pebble: ``{"outcome"}``."""
    return codec.dumps({"outcome": outcome})


def _done_row(action: PebbleDone, now: float) -> tuple[Any, ...]:
    failed = codec.dumps(list(action.failed_nodes)) if action.failed_nodes else None
    return (str(action.outcome), failed, now, action.pebble_id)
