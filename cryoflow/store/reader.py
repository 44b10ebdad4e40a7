"""Read-only queries over the state store, for the web view, the API and ``ccstatus``.

Contract: every method returns plain, JSON-friendly values (dicts, lists, str, int,
float, None) built from one consistent snapshot of the database; branches are keyed by
their string form (``""``, ``"3"``, ``"3.0"``). Each instance serialises its own calls
with a mutex, so one :class:`StoreReader` may be shared by threads. Filters are only
ever bound as parameters; the SQL text is assembled from constant fragments.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryoflow.store import codec, journal
from cryoflow.store.guard import translated
from cryoflow.store.retention import PRUNED, pruned_counts
from cryoflow.store.runs import META_KEY, NodeShapes
from cryoflow.store.schema import read_meta

_PEBBLE_COLUMNS = (
    "id",
    "input_node",
    "item",
    "state",
    "outcome",
    "failed_nodes",
    "created",
    "finished",
)
_PEBBLE_SELECT = (
    "SELECT id, input_node, item, state, outcome, failed_nodes, created, finished FROM pebbles"
)
_PEBBLE_FILTERS = {
    "state": "state = ?",
    "active": "state = 'active' AND outcome IS NULL AND ? = 'active'",  # the partial index
    "outcome": "outcome = ?",
    "after_id": "id > ?",
}
_NODES_OF = (
    "SELECT n.node, n.branch, n.status, n.outcome, " + codec.NODE_OUTPUT + ", n.error,"
    " n.resolved_by, n.combined, n.attempts, n.lost, n.stats, n.branches, "
    + codec.JOB_OF_NODE_COLUMN
    + " FROM nodes AS n JOIN pebbles AS p ON p.id = n.pebble_id "
    + codec.JOB_OF_NODE + " WHERE n.pebble_id = ?"
)
_NODE_LABELS = (
    "SELECT node, CASE WHEN status = 'done' THEN outcome ELSE status END, count(*)"
    " FROM nodes GROUP BY 1, 2"
)
_NODE_ROWS = (
    "SELECT node, CASE WHEN status = 'done' THEN outcome ELSE status END, status = 'done',"
    " CASE WHEN branch = '' THEN 0 ELSE length(branch) - length(replace(branch, '.', '')) + 1"
    " END, branches > 0, count(*) FROM nodes GROUP BY 1, 2, 3, 4, 5"
)
"""Node rows by label, finished or not, branch depth and whether they join branches."""
_RUNNING_PER_NODE = "SELECT node, count(*) FROM jobs WHERE state = 'running' GROUP BY node"
_PEBBLE_COUNTS = "SELECT state, outcome, count(*) FROM pebbles GROUP BY state, outcome"

_JOB_COLUMNS = codec.JOB_KEY_COLUMNS + (
    "state",
    "created",
    "started",
    "finished",
    "worker",
    "host",
    "outcome",
    "retval",
    "error",
    "stats",
)
_JOB_SELECT = (
    "SELECT " + ", ".join("j." + c for c in _JOB_COLUMNS).replace(
        "j.retval", "coalesce(j.retval, n.output)")
    + " FROM jobs AS j LEFT JOIN nodes AS n ON j.retval IS NULL AND j.outcome = 'success'"
    " AND n.pebble_id = j.pebble_id AND n.node = j.node AND n.branch = j.branch"
    " AND n.attempts + n.lost = j.attempt"
)
"""A job's ``retval`` is stored once, as its node's output, when that is the same value."""
_JOB_FILTERS = {
    "state": "j.state = ?",
    "node": "j.node = ?",
    "pebble_id": "j.pebble_id = ?",
    "id_from": "j.id >= ?",
    "id_below": "j.id < ?",
    "after": "j.id > ?",
}

_LOG_COLUMNS = ("id", "ts", "level", "pebble_id", "job_id", "node", "message")
_LOG_SELECT = "SELECT id, ts, level, pebble_id, job_id, node, message FROM logs"
_LOG_FILTERS = {
    "after_id": "id > ?",
    "pebble_id": "pebble_id = ?",
    "job_id": "job_id = ?",
    "node": "node = ?",
    "level": "level = ?",
    "grep": "instr(message, ?) > 0",
    "since": "ts >= ?",
}
_STATUS = "SELECT channel, key, value FROM status"
_TOTALS = (
    "SELECT (SELECT count(*) FROM pebbles),"
    " (SELECT count(*) FROM pebbles WHERE state = 'active'),"
    " (SELECT count(*) FROM jobs WHERE state = 'queued'),"
    " (SELECT count(*) FROM jobs WHERE state = 'running')"
)
_TOTAL_NAMES = ("pebbles", "unfinished_pebbles", "queued_jobs", "running_jobs")


def where(filters: Mapping[str, Any], clauses: Mapping[str, str]) -> tuple[str, list[Any]]:
    """A WHERE clause of the constant ``clauses`` whose filter value is not None."""
    parts, params = [], []
    for name, value in filters.items():
        if value is not None:
            parts.append(clauses[name])
            params.append(value)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block's reads in one read transaction (or in the one already open)."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


class Queries:
    """The query methods shared by :class:`StoreReader` and the head's ``Store``."""

    _conn: sqlite3.Connection
    _db: Path
    _mutex: threading.Lock

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._mutex, translated(self._db):
            return self._conn.execute(sql, params).fetchall()

    def pebble(self, pebble_id: int) -> dict[str, Any] | None:
        """One pebble with ``nodes``: ``{node: {branch: state}}``; None if unknown."""
        with self._mutex, translated(self._db), snapshot(self._conn):
            row = self._conn.execute(_PEBBLE_SELECT + " WHERE id = ?", (pebble_id,)).fetchone()
            nodes = self._conn.execute(_NODES_OF, (pebble_id,)).fetchall()
        if row is None:
            return None
        pebble = _pebble_dict(row)
        tree: dict[str, dict[str, Any]] = {}
        pebble["nodes"] = tree
        for node, branch, *state, job_stats in nodes:
            tree.setdefault(node, {})[branch] = codec.node_dict(state, job_stats)
        return pebble

    def pebbles(
        self,
        *,
        state: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[dict[str, Any]]:
        """Pebbles by id after ``after_id`` (no ``nodes``; see :meth:`pebble`)."""
        filters = {"outcome": outcome, "after_id": after_id}
        filters["active" if state == "active" and outcome is None else "state"] = state
        clause, params = where(filters, _PEBBLE_FILTERS)
        rows = self._all(_PEBBLE_SELECT + clause + " ORDER BY id LIMIT ?", [*params, limit])
        return [_pebble_dict(row) for row in rows]

    def node_counts(self) -> dict[str, dict[str, int]]:
        """Per node, how many pebble branches are in each state or outcome.

        Labels are the node statuses (waiting, queued, deferred, split) and, once done,
        the outcomes (success, error, timeout, cancel, skipped). ``running`` counts the
        node's running jobs, which are taken out of ``queued``.
        """
        with self._mutex, translated(self._db), snapshot(self._conn):
            labels = self._conn.execute(_NODE_LABELS).fetchall()
            running = self._conn.execute(_RUNNING_PER_NODE).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for node, label, n in labels:
            counts.setdefault(node, {})[label] = n
        _add_running(counts, running)
        return counts

    def node_runs(self, shapes: NodeShapes | None = None) -> dict[str, dict[str, int]]:
        """Per node in graph order, how many runs are in each state or outcome.

        What counts as a run is :mod:`cryoflow.store.runs`'s rule (what ``ccstatus``, the
        API and the end-of-run summary show); ``shapes`` are the graph's, by default the
        ones the head recorded in the store. Labels and ``running`` are as in
        :meth:`node_counts`.
        """
        with self._mutex, translated(self._db), snapshot(self._conn):
            rows = self._conn.execute(_NODE_ROWS).fetchall()
            running = self._conn.execute(_RUNNING_PER_NODE).fetchall()
            if shapes is None:
                shapes = NodeShapes.loads(read_meta(self._conn, META_KEY))
        counts: dict[str, dict[str, int]] = {}
        for node, label, done, depth, joined, n in rows:
            if not done or shapes.counts_done(node, depth, bool(joined)):
                per_node = counts.setdefault(node, {})
                per_node[label] = per_node.get(label, 0) + n
        _add_running(counts, running)
        return {name: counts[name] for name in shapes.ordered(counts)}

    def pebble_counts(self) -> dict[str, int]:
        """``{"active", "completed", "failed"}`` pebble counts (pruned ones included)."""
        counts = {"active": 0, **pruned_counts(self._all(PRUNED))}
        for state, outcome, n in self._all(_PEBBLE_COUNTS):
            key = "active" if state == "active" else outcome
            counts[key] = counts.get(key, 0) + n
        return counts

    def jobs(
        self,
        *,
        state: str | None = None,
        node: str | None = None,
        pebble_id: int | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs ordered by id, after the job id ``after`` (see :meth:`job`)."""
        filters: dict[str, Any] = {"state": state, "node": node, "pebble_id": pebble_id,
                                   "after": after}
        if pebble_id is not None:  # its job ids are the range "12/" <= id < "120"
            filters.update(id_from=f"{pebble_id}/", id_below=f"{pebble_id}0")
        clause, params = where(filters, _JOB_FILTERS)
        rows = self._all(_JOB_SELECT + clause + " ORDER BY j.id LIMIT ?", [*params, limit])
        return [_job_dict(row) for row in rows]

    def job(self, job_id: str) -> dict[str, Any] | None:
        """One job: its columns, with ``spec`` the whole JobSpec as a dict."""
        rows = self._all(_JOB_SELECT + " WHERE j.id = ?", (job_id,))
        return _job_dict(rows[0]) if rows else None

    def logs(
        self,
        *,
        pebble_id: int | None = None,
        job_id: str | None = None,
        node: str | None = None,
        level: str | None = None,
        grep: str | None = None,
        since: float | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Log lines by id after ``after_id``; ``grep`` is a plain substring."""
        filters = {
            "after_id": after_id,
            "pebble_id": pebble_id,
            "job_id": job_id,
            "node": node,
            "level": level,
            "grep": grep,
            "since": since,
        }
        clause, params = where(filters, _LOG_FILTERS)
        rows = self._all(_LOG_SELECT + clause + " ORDER BY id LIMIT ?", [*params, limit])
        return [dict(zip(_LOG_COLUMNS, row)) for row in rows]

    def events(self, *, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events after ``after_seq`` in order: ``{seq, ts, kind, pebble_id, job_id, data}``."""
        rows = self._all(journal.READ, (after_seq, limit + 1))
        return journal.read(rows, after_seq, limit)

    def status_values(self, channel: str | None = None) -> dict[str, dict[str, Any]]:
        """The latest status values: ``{channel: {key: value}}``."""
        clause, params = where({"channel": channel}, {"channel": "channel = ?"})
        values: dict[str, dict[str, Any]] = {}
        for chan, key, value in self._all(_STATUS + clause, params):
            values.setdefault(chan, {})[key] = codec.loads(value)
        return values

    def totals(self) -> dict[str, int]:
        """``{"pebbles", "unfinished_pebbles", "queued_jobs", "running_jobs"}`` counts."""
        return dict(zip(_TOTAL_NAMES, self._all(_TOTALS)[0]))

    def cache_get(self, key: str) -> tuple[Any, float] | None:
        """``(retval, when)`` of the cached result under ``key``, or None."""
        rows = self._all("SELECT retval, ts FROM cache WHERE key = ?", (key,))
        return (codec.loads(rows[0][0]), float(rows[0][1])) if rows else None

    def has_seen(self, key: str) -> bool:
        """Whether a pebble was stored with ``seen_key=key`` (a watcher's file version)."""
        return bool(self._all("SELECT 1 FROM seen WHERE key = ?", (key,)))

    def integrity_check(self) -> tuple[str, list[Any]]:
        """``PRAGMA integrity_check`` (``"ok"`` when sound) and ``foreign_key_check`` rows."""
        with self._mutex, translated(self._db):
            check = self._conn.execute("PRAGMA integrity_check").fetchall()
            foreign = self._conn.execute("PRAGMA foreign_key_check").fetchall()
        return "\n".join(str(r[0]) for r in check), [tuple(r) for r in foreign]


class StoreReader(Queries):
    """A read-only connection to a state database, for threads other than the head's."""

    def __init__(self, db: Path, *, busy_timeout_s: float = 5.0) -> None:
        with translated(db):
            self._conn = sqlite3.connect(
                db.as_uri() + "?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_s,
            )
            self._conn.execute("PRAGMA query_only = ON")
        self._db = db
        self._mutex = threading.Lock()

    def close(self) -> None:
        """Close the connection (waits for a query in flight on another thread)."""
        with self._mutex:
            self._conn.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _add_running(counts: dict[str, dict[str, int]], running: Sequence[Any]) -> None:
    """Count each node's running jobs as ``running``, taken out of ``queued``."""
    for node, n in running:
        per_node = counts.setdefault(node, {})
        per_node["running"] = n
        per_node["queued"] = max(0, per_node.get("queued", 0) - n)


def _pebble_dict(row: Sequence[Any]) -> dict[str, Any]:
    pebble = dict(zip(_PEBBLE_COLUMNS, row))
    pebble["item"] = codec.loads(pebble["item"])
    pebble["failed_nodes"] = codec.loads(pebble["failed_nodes"]) or []
    return pebble


def _job_dict(row: Sequence[Any]) -> dict[str, Any]:
    job = dict(zip(_JOB_COLUMNS, row))
    job["spec"] = codec.spec_dict(row[: len(codec.JOB_KEY_COLUMNS)])
    job["retval"] = codec.loads(job["retval"])
    job["stats"] = codec.job_stats(job["stats"], job["worker"], job["host"], job["finished"],
                                   job["started"])
    return job
