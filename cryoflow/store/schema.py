"""The store's tables, their numbered migrations, and the version check.

Contract:

- ``MIGRATIONS[i]`` takes a database from schema version ``i`` to ``i + 1``; version 0
  is an empty database. A release only ever appends to this list.
- :func:`migrate` applies every pending migration and records the new version in the
  ``meta`` table in one transaction: a crash leaves the old version or the new one.
- A database whose version is newer than ``len(MIGRATIONS)``, that has tables but no
  ``meta``, or that belongs to another workflow is refused with a :class:`StoreError`
  that says what to do; nothing is changed in it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from cryoflow import __version__
from cryoflow.errors import StoreError

_V1 = """
CREATE TABLE meta(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE pebbles(
    id INTEGER PRIMARY KEY,
    input_node TEXT NOT NULL,
    item TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'done')),
    outcome TEXT,
    failed_nodes TEXT,
    created REAL NOT NULL,
    finished REAL,
    idem_key TEXT,
    seen_key TEXT
);
CREATE INDEX pebbles_state ON pebbles(state, outcome);
CREATE UNIQUE INDEX pebbles_idem_key ON pebbles(idem_key) WHERE idem_key IS NOT NULL;
CREATE UNIQUE INDEX pebbles_seen_key ON pebbles(seen_key) WHERE seen_key IS NOT NULL;

CREATE TABLE nodes(
    pebble_id INTEGER NOT NULL REFERENCES pebbles(id),
    node TEXT NOT NULL,
    branch TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    output TEXT,
    error TEXT,
    resolved_by TEXT,
    combined TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    stats TEXT,
    branches INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pebble_id, node, branch)
) WITHOUT ROWID;

CREATE TABLE jobs(
    id TEXT PRIMARY KEY,
    pebble_id INTEGER NOT NULL REFERENCES pebbles(id),
    node TEXT NOT NULL,
    branch TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'cancelled')),
    priority INTEGER NOT NULL,
    worker_class TEXT NOT NULL,
    spec TEXT NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    worker TEXT,
    host TEXT,
    outcome TEXT,
    retval TEXT,
    error TEXT,
    stats TEXT
) WITHOUT ROWID;
CREATE INDEX jobs_ready ON jobs(state, worker_class, priority DESC, pebble_id, created);
CREATE INDEX jobs_pebble ON jobs(pebble_id);

CREATE TABLE events(
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    pebble_id INTEGER,
    job_id TEXT,
    data TEXT
);

CREATE TABLE status(
    channel TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    ts REAL NOT NULL,
    PRIMARY KEY (channel, key)
) WITHOUT ROWID;

CREATE TABLE logs(
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    level TEXT NOT NULL,
    pebble_id INTEGER,
    job_id TEXT,
    node TEXT,
    message TEXT NOT NULL
);
CREATE INDEX logs_pebble ON logs(pebble_id) WHERE pebble_id IS NOT NULL;
CREATE INDEX logs_job ON logs(job_id) WHERE job_id IS NOT NULL;

CREATE TABLE seen(
    key TEXT PRIMARY KEY,
    pebble_id INTEGER REFERENCES pebbles(id),
    ts REAL NOT NULL
) WITHOUT ROWID;
"""

_V2 = """
CREATE TABLE cache(
    key TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    retval TEXT,
    ts REAL NOT NULL
) WITHOUT ROWID;
"""
"""Results of successful jobs of nodes with ``cache``, by the hash of their inputs."""

_V3 = """
CREATE TABLE journal(
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    data TEXT NOT NULL
);
INSERT INTO journal(seq, ts, n, data)
    SELECT seq, ts, 1, json_array(json_array(kind, pebble_id, job_id, json(data))) FROM events;
DROP TABLE events;

CREATE TABLE jobs_v3(
    id TEXT PRIMARY KEY,
    pebble_id INTEGER NOT NULL,
    node TEXT NOT NULL,
    branch TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'cancelled')),
    priority INTEGER NOT NULL,
    worker_class TEXT NOT NULL,
    spec TEXT NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    worker TEXT,
    host TEXT,
    outcome TEXT,
    retval TEXT,
    error TEXT,
    stats TEXT
) WITHOUT ROWID;
INSERT INTO jobs_v3 SELECT id, pebble_id, node, branch, attempt, state, priority,
    worker_class, spec, not_before, created, started, finished, worker, host, outcome,
    retval, error, stats FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v3 RENAME TO jobs;
CREATE INDEX jobs_open ON jobs(state, node) WHERE state IN ('queued', 'running');
DROP INDEX pebbles_state;
CREATE INDEX pebbles_active ON pebbles(id) WHERE state = 'active';

CREATE TABLE seen_v3(
    key TEXT PRIMARY KEY,
    pebble_id INTEGER,
    ts REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO seen_v3 SELECT key, pebble_id, ts FROM seen;
DROP TABLE seen;
ALTER TABLE seen_v3 RENAME TO seen;
"""
"""The event log packed one row per commit (:mod:`cryoflow.store.journal`). Only open
jobs and active pebbles are indexed by state (each leaves that index once); a pebble's jobs are
found by their id prefix, so ``jobs`` and ``seen`` no longer declare a foreign key to
``pebbles`` (removing a pebble would scan them): retention removes a pebble's jobs with
it and keeps a watcher's ``seen`` key without its pebble."""

MIGRATIONS: list[str] = [_V1, _V2, _V3]
"""``MIGRATIONS[i]`` is the DDL script from schema version ``i`` to ``i + 1``."""

_HAS_META = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
_HAS_TABLES = "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
_GET_META = "SELECT value FROM meta WHERE key = ?"
_PUT_META = "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"


def read_version(conn: sqlite3.Connection, db: Path) -> int:
    """The schema version of ``db``: 0 when it has no tables at all."""
    if conn.execute(_HAS_META).fetchone()[0]:
        row = conn.execute(_GET_META, ("schema_version",)).fetchone()
        if row is not None:
            return int(row[0])
    elif not conn.execute(_HAS_TABLES).fetchone()[0]:
        return 0
    raise StoreError(
        f"{db} is an SQLite database but not a cryoflow state store; it was left as it "
        "is. Pick another folder with --state"
    )


def read_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """One value of the ``meta`` table, or None."""
    row = conn.execute(_GET_META, (key,)).fetchone()
    return None if row is None else str(row[0])


def write_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set one value of the ``meta`` table."""
    conn.execute(_PUT_META, (key, value))


def migrate(
    conn: sqlite3.Connection,
    db: Path,
    *,
    workflow: str,
    now: float,
    migrations: Sequence[str] | None = None,
) -> int:
    """Bring ``db`` to the newest schema version in one transaction; return it.

    A new database (version 0) also records ``workflow``, the creation time and the
    cryoflow version. Refuses (``StoreError``) a database newer than this code or one
    that belongs to another workflow.
    """
    steps = MIGRATIONS if migrations is None else migrations
    version = read_version(conn, db)
    _check_not_newer(version, len(steps), db)
    if version:
        check_workflow(conn, db, workflow)
    if version == len(steps):
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        for script in steps[version:]:
            _run_script(conn, script)
        _write_meta(conn, version, len(steps), workflow=workflow, now=now)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(steps)


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the open transaction.

    ``executescript`` would commit first, so the script is split into complete
    statements here (a ``;`` inside a string literal stays where it is).
    """
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                conn.execute(pending)
            pending = ""


def _write_meta(conn: sqlite3.Connection, old: int, new: int, *, workflow: str, now: float) -> None:
    values = {"schema_version": str(new)}
    if old == 0:
        values.update(workflow=workflow, created=repr(now), cryoflow_version=__version__)
    conn.executemany(_PUT_META, values.items())


def _check_not_newer(version: int, known: int, db: Path) -> None:
    if version > known:
        raise StoreError(
            f"{db} was written by a newer cryoflow (schema version {version}; this "
            f"cryoflow {__version__} knows up to {known}); upgrade cryoflow "
            "(pip install -U cryoflow), or pick another folder with --state"
        )


def check_workflow(conn: sqlite3.Connection, db: Path, workflow: str) -> None:
    """Refuse a state store that was created for another workflow."""
    owner = read_meta(conn, "workflow")
    if owner is not None and owner != workflow:
        raise StoreError(
            f"state folder {db.parent} holds the state of workflow {owner!r}, not "
            f"{workflow!r}; pick another folder with --state, or start over with --fresh"
        )
