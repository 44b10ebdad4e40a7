"""Writes of one store transaction: :class:`Batch`, and the statements it runs.

Contract: a :class:`Batch` only exists inside :meth:`Store.batch
<cryoflow.store.sqlite.Store.batch>`, which commits or rolls back all of its writes
together. Each engine action kind is written with one ``executemany``; events are
buffered and written in call order just before the commit, packed into one journal row
(:mod:`cryoflow.store.journal`). Job results are held until the node changes they cause
arrive, so that what both would hold is stored once. No method reads a row back in the
hot path (job queued, dispatched, node changed, job started or finished).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping
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
    evolve,
    parse_branch,
)
from cryoflow.engine.records import job_id as make_job_id
from cryoflow.graph.model import Outcome
from cryoflow.store import codec, journal
from cryoflow.store import retention as retention_

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
    " not_before, created, state, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
    " worker = coalesce(?, worker), host = coalesce(?, host), started = coalesce(?, started),"
    " finished = ? WHERE id = ? AND state <> 'done'"
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
HAS_SEEN = "SELECT 1 FROM seen WHERE key = ?"
LOST_REASON = "the head stopped while this job was running"


class Batch:
    """The writes of one transaction; get one from :meth:`Store.batch`, use it only
    inside that ``with`` block.

    Each pebble, job and node write also adds an event to the log (the web view's
    resume cursor): pebble_added, job_queued, node_changed, job_cancelled, pebble_done,
    job_started, job_finished, job_lost, plus :meth:`add_event`; a job's dispatch,
    status values and log lines add none. Events are written just before the commit,
    in call order (a job's start, result and the node change it causes side by side).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._times: list[float] = []
        self._entries: list[journal.Entry] = []
        self._finishes: dict[str, tuple[list[Any], Mapping[str, Any], Any]] = {}
        """Job results not written yet: ``id → (row, stats, retval)`` (see :meth:`apply`)."""
        self._finish_entries: dict[str, journal.Entry] = {}
        self._start_entries: dict[str, journal.Entry] = {}
        self._inserted_running: set[str] = set()
        """Jobs :meth:`apply` inserted already running (see its ``dispatched``)."""
        self._added: dict[int, tuple[str, Mapping[str, Any]]] = {}
        """Pebbles added in this batch: ``id → (input node, item)``."""
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
        self._added[new_id] = (input_node, item)
        self._event(now, ["a", new_id])
        return new_id, True

    def _existing(self, idem_key: str | None, seen_key: str | None) -> int | None:
        for sql, key in ((FIND_IDEM, idem_key), (FIND_SEEN, seen_key)):
            if key is not None:
                row = self._conn.execute(sql, (key,)).fetchone()
                if row is not None:
                    return int(row[0])
        return None

    def apply(self, actions: Iterable[Action], *, now: float,
              dispatched: Collection[str] = ()) -> None:
        """Persist the engine's actions, each kind with one ``executemany``.

        NodeChanged upserts the node row (the last one for a key wins); QueueJob inserts
        a queued job unless its id exists (``running`` from ``now`` when its id is in
        ``dispatched``: it is handed out in this same batch); CancelJob cancels a job
        that is queued or running; PebbleDone closes the pebble with its outcome and
        failed nodes.
        """
        self._release()
        nodes: list[tuple[Any, ...]] = []
        jobs: list[tuple[Any, ...]] = []
        cancels: list[tuple[float, str]] = []
        dones: list[tuple[Any, ...]] = []
        removed: list[tuple[Any, ...]] = []
        reopened: list[tuple[int]] = []
        times, entries = self._times, self._entries
        for action in actions:
            times.append(now)
            if isinstance(action, NodeChanged):
                row = self._node_row(action)
                nodes.append(row)
                if not self._folded(row):
                    entries.append(journal.node_entry(row[0], row[1], row[2], row[3], row[4]))
            elif isinstance(action, QueueJob):
                job = action.job
                if job.id in dispatched:  # queued and handed out in this batch: one write
                    jobs.append((*codec.job_row(job, now), "running", now))
                    self._inserted_running.add(job.id)
                else:
                    jobs.append((*codec.job_row(job, now), "queued", None))
                last = entries[-1] if entries else None
                if last == journal.node_entry(job.pebble_id, job.node, branch_key(job.branch),
                                              "queued", None):
                    times.pop()
                    entries[-1] = ["Q", job.id]  # the node's change and its job's queueing
                else:
                    entries.append(["q", job.id])
            elif isinstance(action, CancelJob):
                cancels.append((now, action.job_id))
                entries.append(["c", action.job_id])
            elif isinstance(action, PebbleDone):
                dones.append(_done_row(action, now))
                entries.append(["d", action.pebble_id, str(action.outcome)])
            elif isinstance(action, NodeRemoved):
                key = (action.pebble_id, action.node, branch_key(action.branch))
                nodes = [row for row in nodes if row[:3] != key]
                removed.append(key)
                entries.append(journal.other_entry("node_removed", action.pebble_id, None, None))
            elif isinstance(action, PebbleReopened):
                reopened.append((action.pebble_id,))
                entries.append(journal.other_entry("pebble_reopened", action.pebble_id, None, None))
            else:
                times.pop()
                raise TypeError(f"not a store action: {action!r}")
        self._release_finishes()
        self._write(removed, reopened, nodes, jobs, cancels, dones)

    def _node_row(self, action: NodeChanged) -> tuple[Any, ...]:
        """The node's row; what its job's result row already holds is stored once.

        When this change records the result of a job finished in this batch, the job
        row keeps the stats (the node row refers to them, with the node's priority)
        and the node row keeps the output (the job row's ``retval`` is then derived).
        """
        state = action.state
        if self._is_item(action):  # read back from the pebble's item (codec.NODE_OUTPUT)
            state = evolve(state, output=None)
        row = codec.node_row(action.pebble_id, action.node, action.branch, state)
        if not (state.stats or state.output is not None) or not self._finishes:
            return row
        attempt = state.attempts + state.lost
        key = make_job_id(action.pebble_id, action.node, action.branch, attempt)
        finish = self._finishes.get(key)
        if finish is None:
            return row
        finish_row, stats, retval = finish
        if retval is not None and state.output is retval:
            finish_row[1] = None
        if codec.is_job_stats(state.stats, stats):
            row = row[:11] + (codec.job_stats_ref(state.stats),) + row[12:]
        return row

    def _is_item(self, action: NodeChanged) -> bool:
        """Is this the input node's success with the item of a pebble added in this batch?"""
        added = self._added.get(action.pebble_id)
        return (added is not None and added[0] == action.node and not action.branch
                and action.state.outcome is Outcome.SUCCESS and action.state.output == added[1])

    def _folded(self, row: tuple[Any, ...]) -> bool:
        """Fold a node's change to done into the job_finished entry that caused it."""
        if row[3] != "done" or not self._finish_entries:
            return False
        key = make_job_id(row[0], row[1], parse_branch(row[2]), row[9] + row[10])
        entry = self._finish_entries.pop(key, None)
        if entry is None or entry[2] != row[4]:
            return False
        entry[0] = "F"
        return True

    def _release_finishes(self) -> None:
        """Write the held job results (before anything that reads or changes jobs)."""
        if self._finishes:
            self._release()
            self._conn.executemany(FINISH_JOB, [f[0] for f in self._finishes.values()])
            self._finishes.clear()

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
        self._release_finishes()
        rows = [(now, job_id) for job_id in job_ids if job_id not in self._inserted_running]
        if rows:
            self._conn.executemany(DISPATCH_JOB, rows)

    def job_started(
        self, job_id: str, *, worker: str, host: str, now: float, write: bool = True
    ) -> None:
        """Note where a dispatched job runs: ``worker``@``host``, started ``now``.

        ``write=False`` only adds the event: the job's result, in the same batch,
        carries the worker and host (one write per job state change).
        """
        if write:
            self._hold(START_JOB, (now, worker, host, job_id))
        entry = ["s", job_id, worker, host]
        self._start_entries[job_id] = entry
        self._event(now, entry)

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
        worker, host = stats.get("worker") or None, stats.get("node") or None
        stats_json = codec.job_stats_text(stats, worker=worker, host=host, finished=now)
        started = codec.started_column(stats)
        row = [outcome, retval_json, error, stats_json, worker, host, started, now, job_id]
        if job_id in self._finishes:
            self._release_finishes()
        self._finishes[job_id] = (row, stats, retval)
        entry = ["f", job_id, outcome]
        start = self._start_entries.pop(job_id, None)
        if start is not None and self._entries and start[0] == "s":
            entry += start[2:]  # its job_started goes with it (the start's entry is dropped)
            start[0] = None
        self._finish_entries[job_id] = entry
        self._event(now, entry)

    def requeue_running(self, *, now: float) -> list[str]:
        """At resume: close every job left ``running`` and return their ids.

        Each one becomes ``done`` with outcome ``lost``, so that it is neither listed by
        ``open_jobs`` nor counted again at a later restart. Call it in the resume batch
        and hand the ids to the engine as lost jobs there: its next attempts are then
        queued in the same transaction.
        """
        self._release_finishes()
        running = self._conn.execute(RUNNING_JOBS).fetchall()
        self._conn.execute(LOSE_RUNNING, (LOST_REASON, now))
        for jid, _ in running:
            self._event(now, ["l", jid])
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
        self._event(now, journal.other_entry(kind, pebble_id, job_id, data))

    def _event(self, now: float, entry: journal.Entry) -> None:
        self._times.append(now)
        self._entries.append(entry)

    def cache_put(self, key: str, *, node: str, retval: Any, now: float) -> None:
        """Remember a successful result under the hash of its node's cached inputs."""
        self._release()
        self._conn.execute(PUT_CACHE, (key, node, codec.dumps_opt(retval), now))

    def prune(self, retention: retention_.Retention, *, now: float,
              limit: int | None = None) -> int:
        """Remove finished pebbles that ``retention`` lets go; return how many."""
        self._release_finishes()
        return retention_.prune(self._conn, retention, now=now, limit=limit)

    def has_seen(self, key: str) -> bool:
        """Whether a pebble was stored with ``seen_key=key``."""
        self._release()
        return self._conn.execute(HAS_SEEN, (key,)).fetchone() is not None

    def flush(self) -> None:
        """Write held rows and buffered events (:meth:`Store.batch` calls it before COMMIT)."""
        self._release_finishes()
        self._release()
        if self._entries:
            last = self._conn.execute(journal.LAST_SEQ).fetchone()
            seq = 1 if last is None else last[0] + 1
            rows = []
            for ts, n, data in journal.pack(self._times, self._entries):
                rows.append((seq, ts, n, data))
                seq += n
            self._conn.executemany(journal.INSERT, rows)
            self._times.clear()
            self._entries.clear()
            self._finish_entries.clear()
            self._start_entries.clear()


def _done_row(action: PebbleDone, now: float) -> tuple[Any, ...]:
    failed = codec.dumps(list(action.failed_nodes)) if action.failed_nodes else None
    return (str(action.outcome), failed, now, action.pebble_id)
