"""The head's durable state: one SQLite database in WAL mode in the state folder.

Contract:

- :meth:`Store.open` locks the folder (one head per folder), refuses files that are not
  usable state databases without touching them, creates a new database atomically, and
  migrates an old one. ``fresh=True`` first moves the old database aside.
- Every write happens inside :meth:`Store.batch`: one ``BEGIN IMMEDIATE`` transaction
  that commits when the block ends and rolls back if it raises, so an event and the
  actions it causes are durable together or not at all (group commit).
- Full disk (or page limit) raises :class:`StoreFullError`; the failed batch leaves
  nothing behind and later batches work once space is free. Every other sqlite error
  becomes a :class:`StoreError` naming the database.
- The :class:`Store` connection belongs to the head's thread; other threads read through
  :meth:`Store.reader`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from pathlib import Path
from typing import Any

from cryoflow.engine.records import (
    Branch,
    JobSpec,
    NodeState,
    parse_branch,
)
from cryoflow.errors import StoreError
from cryoflow.store import codec, guard, schema
from cryoflow.store.batch import Batch
from cryoflow.store.lock import StateLock
from cryoflow.store.reader import Queries, StoreReader, snapshot
from cryoflow.store.retention import Retention
from cryoflow.store.runs import META_KEY, NodeShapes

DB_NAME = guard.DB_NAME
BUSY_TIMEOUT_S = 5.0
WAL_KEEP_BYTES = 4 << 20
"""A write-ahead log grown past this by a big commit is cut back to it after a checkpoint."""
ACTIVE_PAGE = 500
"""Pebbles read per query while streaming :meth:`Store.active_pebbles`."""

_SYNCHRONOUS = {
    "NORMAL": "PRAGMA synchronous = NORMAL",
    "FULL": "PRAGMA synchronous = FULL",
    "EXTRA": "PRAGMA synchronous = EXTRA",
}

NEXT_PEBBLE_ID = "SELECT coalesce(max(id), 0) + 1 FROM pebbles"
ACTIVE_PEBBLES = (
    "SELECT id, input_node, item FROM pebbles"
    " WHERE state = 'active' AND outcome IS NULL AND id > ? ORDER BY id LIMIT ?"
)
ACTIVE_NODES = (
    "SELECT n.pebble_id, n.node, n.branch, n.status, n.outcome, " + codec.NODE_OUTPUT + ","
    " n.error, n.resolved_by, n.combined, n.attempts, n.lost, n.stats, n.branches, "
    + codec.JOB_OF_NODE_COLUMN
    + " FROM pebbles AS p JOIN nodes AS n ON n.pebble_id = p.id " + codec.JOB_OF_NODE +
    " WHERE p.state = 'active' AND p.outcome IS NULL AND p.id BETWEEN ? AND ?"
    " ORDER BY p.id"
)
ONE_PEBBLE = "SELECT id, input_node, item FROM pebbles WHERE id = ?"
OPEN_JOBS = (
    "SELECT " + ", ".join(codec.JOB_KEY_COLUMNS) + ", state FROM jobs"
    " WHERE state IN ('queued', 'running') ORDER BY priority DESC, pebble_id, created"
)

Resumed = tuple[int, str, dict[str, Any], dict[tuple[str, Branch], NodeState]]
"""One unfinished pebble: (id, input node, item, {(node, branch): state})."""


class Store(Queries):
    """The state store of one workflow run, held by its head (see the module contract)."""

    def __init__(self, conn: sqlite3.Connection, db: Path, lock: StateLock) -> None:
        self._conn = conn
        self._db = db
        self._lock = lock
        self._mutex = threading.Lock()
        self._readers: list[StoreReader] = []
        self.commits = 0
        """Write transactions committed through :meth:`batch` since the store was opened."""

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        workflow: str,
        fresh: bool = False,
        synchronous: str = "NORMAL",
        max_pages: int | None = None,
        now: float | None = None,
    ) -> Store:
        """Lock ``state_dir`` and open (or create) its state database.

        ``fresh`` moves an existing database aside to ``state.db.<time>.bak`` first;
        print :meth:`describe` before asking for it. ``synchronous`` is ``NORMAL``
        (default: a power loss may drop the last commits) or ``FULL``/``EXTRA``.
        ``max_pages`` caps the database size in pages (tests of a full store).
        Raises StoreLockedError, or StoreError for an unusable or newer database.
        """
        pragma = _SYNCHRONOUS.get(synchronous.upper())
        if pragma is None:
            raise StoreError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        now = time.time() if now is None else now
        state_dir = Path(state_dir).absolute()
        guard.make_dir(state_dir)
        guard.check_local(state_dir)
        lock = StateLock.acquire(state_dir)
        try:
            db = _prepare(state_dir / DB_NAME, workflow=workflow, fresh=fresh, now=now)
            conn = _connect(db, pragma, max_pages)
            _checked(conn, db)
            _upgrade(conn, db, workflow=workflow, now=now)
        except BaseException:
            lock.release()
            raise
        return cls(conn, db, lock)

    def close(self) -> None:
        """Checkpoint the WAL into the database, close, and release the folder lock."""
        try:
            for reader in self._readers:
                reader.close()
            self.checkpoint()
        except StoreError:
            pass  # the WAL keeps every commit; the next open recovers it
        finally:
            self._conn.close()
            self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it."""
        with guard.translated(self._db):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def record_shapes(self, shapes: NodeShapes) -> None:
        """Keep the graph's node order and merge nodes, for readers without the graph."""
        with self._mutex, guard.translated(self._db):
            schema.write_meta(self._conn, META_KEY, shapes.dumps())

    @staticmethod
    def describe(state_dir: Path) -> dict[str, int]:
        """What the state folder holds, for ``--fresh`` to say what it discards.

        ``{"pebbles", "unfinished_pebbles", "queued_jobs", "running_jobs"}``; all 0
        when there is no database. Reads only; works while a head runs there.
        """
        db = Path(state_dir).absolute() / DB_NAME
        if not db.exists():
            return {"pebbles": 0, "unfinished_pebbles": 0, "queued_jobs": 0, "running_jobs": 0}
        guard.check_file(db)
        with StoreReader(db) as reader:
            return reader.totals()

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """One write transaction: commits at the end of the block, rolls back on error."""
        conn = self._conn
        with guard.translated(self._db):
            conn.execute("BEGIN IMMEDIATE")
            try:
                batch = Batch(conn)
                yield batch
                batch.flush()
                conn.execute("COMMIT")
                self.commits += 1
            except BaseException:
                _rollback(conn)
                raise

    def prune(self, retention: Retention, *, now: float, limit: int | None = None) -> int:
        """Remove finished pebbles ``retention`` lets go, in one transaction (see
        :mod:`cryoflow.store.retention`); return how many went."""
        with self.batch() as tx:
            return tx.prune(retention, now=now, limit=limit)

    def reader(self) -> StoreReader:
        """A new read-only connection for another thread; closed with the store."""
        reader = StoreReader(self._db, busy_timeout_s=BUSY_TIMEOUT_S)
        self._readers.append(reader)
        return reader

    def active_pebbles(self) -> Iterator[Resumed]:
        """Every unfinished pebble with its node states, by id, a page at a time."""
        after = 0
        while True:
            with guard.translated(self._db), snapshot(self._conn):
                rows = self._conn.execute(ACTIVE_PEBBLES, (after, ACTIVE_PAGE)).fetchall()
                if not rows:
                    return
                span = (rows[0][0], rows[-1][0])
                nodes = self._conn.execute(ACTIVE_NODES, span).fetchall()
            yield from _resumed(rows, nodes)
            after = rows[-1][0]

    def saved_pebble(self, pebble_id: int) -> Resumed | None:
        """One pebble (finished or not) with its node states, as ``active_pebbles`` gives."""
        with guard.translated(self._db), snapshot(self._conn):
            rows = self._conn.execute(ONE_PEBBLE, (pebble_id,)).fetchall()
            nodes = self._conn.execute(ACTIVE_NODES.replace(
                "p.state = 'active' AND p.outcome IS NULL AND ", ""), (pebble_id, pebble_id)
            ).fetchall()
        return next(_resumed(rows, nodes), None)

    def open_jobs(self) -> list[tuple[JobSpec, str]]:
        """Jobs queued or running, with that state, best first (priority, then pebble)."""
        rows = self._all(OPEN_JOBS)
        return [(codec.job_spec(row[:-1]), row[-1]) for row in rows]

    def next_pebble_id(self) -> int:
        """One more than the highest pebble id stored (1 for an empty store)."""
        return int(self._all(NEXT_PEBBLE_ID)[0][0])


def _resumed(pebbles: list[Any], nodes: list[Any]) -> Iterator[Resumed]:
    states: dict[int, dict[tuple[str, Branch], NodeState]] = {}
    for pebble_id, rows in groupby(nodes, key=lambda r: r[0]):
        states[pebble_id] = {
            (r[1], parse_branch(r[2])): codec.node_state(r[3:-1], r[-1]) for r in rows}
    for pebble_id, input_node, item in pebbles:
        yield pebble_id, input_node, codec.loads(item), states.get(pebble_id, {})


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if SQLite has not already done so (it does after SQLITE_FULL)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the original error is the one worth raising


def _prepare(db: Path, *, workflow: str, fresh: bool, now: float) -> Path:
    """Move aside (``fresh``), check or create the database file; return its path."""
    if fresh:
        guard.move_aside(db, now)
    if db.exists():
        guard.check_file(db)
    else:
        guard.move_orphan_wal(db, now)
        _create(db, workflow=workflow, now=now)
    return db


def _create(db: Path, *, workflow: str, now: float) -> None:
    """Build a new database beside ``db`` and rename it into place when complete."""
    tmp = db.with_name(db.name + ".init")
    for leftover in (tmp, guard.wal_path(tmp), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)  # a creation cut short; never user data
    with guard.translated(tmp):
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            schema.migrate(conn, tmp, workflow=workflow, now=now)
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
        finally:
            conn.close()
    guard.publish(tmp, db)


def _connect(db: Path, synchronous: str, max_pages: int | None) -> sqlite3.Connection:
    """Open the head's connection in WAL mode with foreign keys on."""
    with guard.translated(db):
        conn = sqlite3.connect(
            db, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        try:
            _configure(conn, db, synchronous, max_pages)
        except BaseException:
            conn.close()
            raise
    return conn


def _checked(conn: sqlite3.Connection, db: Path) -> None:
    """Refuse a database that fails ``PRAGMA quick_check``; close ``conn`` if so."""
    try:
        guard.check_integrity(conn, db)
    except BaseException:
        conn.close()
        raise


def _upgrade(conn: sqlite3.Connection, db: Path, *, workflow: str, now: float) -> None:
    """Check the schema version and workflow, migrate; close ``conn`` if that fails."""
    try:
        with guard.translated(db):
            schema.migrate(conn, db, workflow=workflow, now=now)
    except BaseException:
        conn.close()
        raise


def _configure(conn: sqlite3.Connection, db: Path, synchronous: str, max_pages: int | None) -> None:
    schema.read_version(conn, db)  # refuse a foreign database before changing its header
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(
            f"state store {db}: the file system does not support SQLite's WAL mode "
            f"(got {mode!r}); pick a folder on a local disk with --state"
        )
    conn.execute(synchronous)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -32768")
    conn.execute("PRAGMA journal_size_limit = " + str(WAL_KEEP_BYTES)).fetchall()
    if max_pages is not None:
        conn.execute("PRAGMA max_page_count = " + str(int(max_pages))).fetchall()
