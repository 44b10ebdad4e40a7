"""Definition and active records of Python flows: ``flow.db`` beside the state store.

A flow's state folder holds the head's ``state.db`` and this catalog, a small SQLite
file of its own (so the store's schema is left alone):

- the **definition**: the flow's name, its flow string (if any), and one row per node
  with its ``dependencies``, its task (a callable reference) and status ``defined``;
- one **active** record per run (the run id is the run's pebble id): one row per node
  whose ``status`` moves ``pending`` → ``running`` → ``finished`` | ``error`` (or
  ``skipped`` when a dependency failed) and which holds the node's ``result``.

:meth:`FlowCatalog.definition_objects` and :meth:`FlowCatalog.active_objects` give
them in the shape of Cloudmesh's ``NAME-flow`` and ``NAME-flow-active`` collections.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoflow.errors import CryoflowError, GraphError
from cryoflow.graph.model import empty_map

CATALOG_NAME = "flow.db"
DEFAULT_ROOT = Path(".cryoflow")
"""Where flows keep their state folders unless told otherwise (``ROOT/NAME``)."""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS flow(key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS definition(name TEXT PRIMARY KEY, position INTEGER NOT NULL,"
    " dependencies TEXT NOT NULL, task TEXT, created REAL NOT NULL, modified REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, status TEXT NOT NULL,"
    " started REAL NOT NULL, finished REAL)",
    "CREATE TABLE IF NOT EXISTS active(run_id INTEGER NOT NULL, name TEXT NOT NULL,"
    " position INTEGER NOT NULL, dependencies TEXT NOT NULL, status TEXT NOT NULL,"
    " result TEXT, error TEXT, modified REAL NOT NULL, PRIMARY KEY (run_id, name))",
)


class CatalogError(CryoflowError):
    """A flow definition cannot be read or changed as asked."""


@dataclass(frozen=True)
class FlowDefinition:
    """What ``flow add`` stored: the name, the flow string, nodes and their tasks."""

    name: str
    nodes: Mapping[str, tuple[str, ...]]
    """Node → its dependencies, in definition order."""
    tasks: Mapping[str, Any] = field(default_factory=empty_map)
    """Node → its callable reference (``"package.module:function"``) or task mapping."""
    text: str | None = None
    """The flow string it was defined with; None once nodes or edges were edited."""


class FlowCatalog:
    """The ``flow.db`` of one flow's state folder (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(state_dir) / CATALOG_NAME
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0,
                                     check_same_thread=False)
        for statement in _SCHEMA:
            self._conn.execute(statement)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> FlowCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ definition

    def define(self, definition: FlowDefinition, now: float | None = None) -> None:
        """Store ``definition``, replacing the one there (creation times are kept)."""
        check_acyclic(definition.nodes)
        now = time.time() if now is None else now
        created = dict(self._conn.execute("SELECT name, created FROM definition").fetchall())
        with self._transaction():
            self._put_meta(definition.name, definition.text)
            self._conn.execute("DELETE FROM definition")
            for position, (name, deps) in enumerate(definition.nodes.items()):
                task = definition.tasks.get(name)
                self._conn.execute(
                    "INSERT INTO definition VALUES (?, ?, ?, ?, ?, ?)",
                    (name, position, json.dumps(list(deps)),
                     None if task is None else json.dumps(task), created.get(name, now), now))

    def definition(self) -> FlowDefinition:
        """The stored definition; :class:`CatalogError` when there is none."""
        meta = dict(self._conn.execute("SELECT key, value FROM flow").fetchall())
        if "name" not in meta:
            raise CatalogError(f"{self.path} holds no flow definition; add one with "
                               "'cryoflow flow add FILE'")
        rows = self._conn.execute(
            "SELECT name, dependencies, task FROM definition ORDER BY position").fetchall()
        return FlowDefinition(
            name=meta["name"],
            nodes={name: tuple(json.loads(deps)) for name, deps, _ in rows},
            tasks={name: json.loads(task) for name, _, task in rows if task is not None},
            text=meta.get("text") or None,
        )

    def definition_objects(self) -> list[dict[str, Any]]:
        """The definition as Cloudmesh's ``NAME-flow`` collection."""
        definition = self.definition()
        rows = self._conn.execute(
            "SELECT name, dependencies, created, modified FROM definition ORDER BY position")
        return [_object(definition.name, name, json.loads(deps), "defined", "flow",
                        created, modified) for name, deps, created, modified in rows]

    def _put_meta(self, name: str, text: str | None) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO flow VALUES (?, ?)",
                               [("name", name), ("text", text or "")])

    # ------------------------------------------------------------------ active records

    def start_run(self, run_id: int, nodes: Mapping[str, tuple[str, ...]],
                  now: float | None = None) -> None:
        """Open the active record of run ``run_id``: every node ``pending``."""
        now = time.time() if now is None else now
        with self._transaction():
            self._conn.execute("INSERT OR IGNORE INTO runs VALUES (?, 'running', ?, NULL)",
                               (run_id, now))
            for position, (name, deps) in enumerate(nodes.items()):
                self._conn.execute(
                    "INSERT OR IGNORE INTO active VALUES (?, ?, ?, ?, 'pending', NULL, NULL, ?)",
                    (run_id, name, position, json.dumps(list(deps)), now))

    def has_run(self, run_id: int) -> bool:
        found = self._conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
        return found is not None

    def set_status(self, run_id: int, name: str, status: str, *, result: Any = None,
                   error: str | None = None, now: float | None = None) -> None:
        """Move one node of run ``run_id`` to ``status`` (with its result or error).

        A node the run grew while it ran gets its row here.
        """
        now = time.time() if now is None else now
        changed = self._conn.execute(
            "UPDATE active SET status = ?, result = ?, error = ?, modified = ?"
            " WHERE run_id = ? AND name = ?",
            (status, json.dumps(result, default=str), error, now, run_id, name)).rowcount
        if not changed:
            self._conn.execute(
                "INSERT INTO active SELECT ?, ?, count(*), '[]', ?, ?, ?, ? FROM active"
                " WHERE run_id = ?",
                (run_id, name, status, json.dumps(result, default=str), error, now, run_id))

    def end_run(self, run_id: int, status: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._conn.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?",
                           (status, now, run_id))

    def runs(self) -> list[dict[str, Any]]:
        """Every run: ``{"id", "status", "started", "finished"}``, oldest first."""
        rows = self._conn.execute("SELECT id, status, started, finished FROM runs ORDER BY id")
        return [dict(zip(("id", "status", "started", "finished"), row)) for row in rows]

    def active_objects(self, run_id: int) -> list[dict[str, Any]]:
        """Run ``run_id`` as Cloudmesh's ``NAME-flow-active`` collection.

        ``dependencies`` lists only those not finished yet, as Cloudmesh keeps them.
        """
        name = self.definition().name
        rows = self._conn.execute(
            "SELECT name, dependencies, status, result, error, modified FROM active"
            " WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        done = {row[0] for row in rows if row[2] == "finished"}
        objects = []
        for node, deps, status, result, error, modified in rows:
            item = _object(name, node, [d for d in json.loads(deps) if d not in done], status,
                           "flow-active", modified, modified)
            item.update(result=None if result is None else json.loads(result), error=error,
                        run=run_id)
            objects.append(item)
        return objects

    # ------------------------------------------------------------------ internals

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if kind is not None else "COMMIT")


def _object(flow: str, node: str, deps: list[str], status: str, suffix: str,
            created: float, modified: float) -> dict[str, Any]:
    return {
        "name": node,
        "dependencies": deps,
        "workflow": flow,
        "kind": "flow",
        "cloud": flow,
        "status": status,
        "cm": {"kind": "flow", "cloud": flow, "name": node, "collection": f"{flow}-{suffix}",
               "created": _when(created), "modified": _when(modified)},
    }


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f"{ts % 1:.6f}"[1:]


def check_acyclic(nodes: Mapping[str, tuple[str, ...]]) -> None:
    """Raise :class:`GraphError` when a dependency is unknown or the nodes form a cycle."""
    for name, deps in nodes.items():
        for dep in deps:
            if dep not in nodes:
                raise GraphError(f"node {name!r} depends on {dep!r}, which is not a node")
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + (name,)
            raise GraphError(f"the flow would have a cycle: {' -> '.join(reversed(cycle))}")
        state[name] = 1
        for dep in nodes[name]:
            visit(dep, (*path, name))
        state[name] = 2

    for name in nodes:
        visit(name, ())
