"""JSON encoding of the values the store keeps, and of its row shapes.

Contract:

- :func:`dumps` writes compact JSON (no spaces). Mappings of any kind become objects,
  tuples and sets become arrays, paths become strings; anything else JSON cannot hold is
  stored as its ``str()`` so that one odd return value never rolls back a whole batch.
- A :class:`~cryoflow.engine.records.NodeState` is a row of the ``nodes`` table
  (:func:`node_row` / :func:`node_state`); defaults are stored as NULL.
- A :class:`~cryoflow.engine.records.JobSpec` is a row of the ``jobs`` table: the fields
  that have their own column (id, pebble, node, branch, attempt, priority, worker class,
  ``not_before``) are not repeated in the ``spec`` JSON, which holds ``args`` and the
  other fields that differ from their defaults (:func:`job_row` / :func:`job_spec`).
"""

from __future__ import annotations

import json
import json.encoder
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, fields
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from cryoflow.engine.records import (
    Branch,
    JobSpec,
    NodeState,
    NodeStatus,
    branch_key,
    parse_branch,
)
from cryoflow.graph.model import EMPTY, Outcome, WorkerClass, frozen_map


def _plain(value: Any) -> Any:
    """Turn what :mod:`json` cannot encode into something it can."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _make_dumps() -> Callable[[Any], str]:
    """The fastest compact encoder available: the C one when :mod:`json` has it.

    ``JSONEncoder.encode`` adds a few microseconds of Python per call, which the
    head pays for several values of every job.
    """
    encoder = json.JSONEncoder(separators=(",", ":"), default=_plain)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode  # pragma: no cover - CPython always has the C encoder
    chunks = make(
        None,  # no cycle check: values are trees built from JSON or by the engine
        _plain,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    join = "".join

    def dumps(value: Any) -> str:
        try:
            return join(chunks(value, 0))
        except (TypeError, ValueError, RecursionError):
            return join(chunks(str(value), 0))  # e.g. a tuple key or a cycle

    return dumps


dumps = _make_dumps()
"""Compact JSON text of a value (see the module contract for odd types)."""


_SHARED = "@c"
"""Flags of stored job stats: 1, ``worker`` and ``node`` are the row's own ``worker`` and
``host`` columns; 2, ``started`` is its ``started`` column; 4, the keys every job's stats
have are stored by their short names (:data:`_SHORT`)."""
_SHORT = {"runtime": "r", "cpu_time": "c", "max_memory": "m", "@finished": "f"}
_LONG = {short: key for key, short in _SHORT.items()}


def started_column(stats: Mapping[str, Any]) -> float | None:
    """What a finished job's ``started`` column holds: when it began on its worker."""
    started = stats.get("started")
    return round(started, 6) if type(started) is float else None


def job_stats_text(stats: Mapping[str, Any], *, worker: str | None, host: str | None,
                   finished: float) -> str | None:
    """A job's stats as its row stores them (None when empty).

    Floats are rounded to microseconds; ``worker`` and ``node`` are left out when the
    row's ``worker`` and ``host`` columns hold them, ``started`` when its ``started``
    column does (:func:`started_column`); ``finished`` is kept as seconds relative to
    the row's ``finished`` column (``"@finished"``). :func:`job_stats` is the inverse.
    """
    if not stats:
        return None
    stored: dict[str, Any] = {}
    flags = 2 if started_column(stats) is not None else 0
    if worker and host and stats.get("worker") == worker and stats.get("node") == host:
        flags |= 1
    if not any(key in _LONG for key in stats):
        flags |= 4
    stored[_SHARED] = flags
    for key, value in stats.items():
        if (flags & 1 and key in ("worker", "node")) or (flags & 2 and key == "started"):
            continue
        if type(value) is float:
            if key == "finished":
                key, value = "@finished", value - finished
            value = round(value, 6)
        stored[_SHORT.get(key, key) if flags & 4 else key] = value
    return dumps(stored)


def job_stats(text: str | None, worker: str | None, host: str | None,
              finished: float | None, started: float | None = None) -> dict[str, Any]:
    """Inverse of :func:`job_stats_text` (to the microsecond), from the row's columns."""
    if text is None:
        return {}
    stored = json.loads(text)
    if not isinstance(stored, dict):
        return {"value": stored}
    stats: dict[str, Any] = {}
    flags = stored.pop(_SHARED, 0)
    if flags & 1:
        stats.update(worker=worker, node=host)
    if flags & 2:
        stats["started"] = started
    for key, value in stored.items():
        if flags & 4:
            key = _LONG.get(key, key)
        if key == "@finished" and finished is not None:
            key, value = "finished", round(finished + value, 6)
        stats[key] = value
    return stats


def dumps_opt(value: Any) -> str | None:
    """:func:`dumps`, except that ``None`` and empty mappings are stored as NULL."""
    if value is None or (isinstance(value, Mapping) and not value):
        return None
    return dumps(value)


def loads(text: str | None) -> Any:
    """Inverse of :func:`dumps_opt`: NULL reads back as ``None``."""
    return None if text is None else json.loads(text)


# ------------------------------------------------------------------------------ nodes

NODE_COLUMNS = (
    "status",
    "outcome",
    "output",
    "error",
    "resolved_by",
    "combined",
    "attempts",
    "lost",
    "stats",
    "branches",
)
"""The ``nodes`` columns after ``(pebble_id, node, branch)``, in row order."""


def node_row(pebble_id: int, node: str, branch: Branch, state: NodeState) -> tuple[Any, ...]:
    """The ``nodes`` row of one node branch: key columns, then :data:`NODE_COLUMNS`."""
    return (
        pebble_id,
        node,
        branch_key(branch) if branch else "",
        state.status.value,
        state.outcome,
        None if state.output is None else dumps(state.output),
        state.error,
        state.resolved_by,
        state.combined,
        state.attempts,
        state.lost,
        dumps(state.stats) if state.stats else None,
        state.branches,
    )


JOB_STATS_KEY = "@job"
"""A node's stored stats ``{"@job": priority}``: its job's stats plus that priority."""


def is_job_stats(node_stats: Mapping[str, Any], job_stats: Mapping[str, Any]) -> bool:
    """Are ``node_stats`` exactly ``job_stats`` plus the node's ``priority``?"""
    return (
        "priority" in node_stats
        and "priority" not in job_stats
        and len(node_stats) == len(job_stats) + 1
        and all(node_stats.get(k, _ABSENT) == v for k, v in job_stats.items())
    )


def job_stats_ref(node_stats: Mapping[str, Any]) -> str:
    """The stored form of node stats that :func:`is_job_stats` found to be the job's."""
    return dumps({JOB_STATS_KEY: node_stats["priority"]})


def node_stats(stored: str | None, job: str | None) -> Any:
    """A node's stats as a dict from its stored text and, for a reference, its job's
    (``job`` is the :data:`JOB_OF_NODE` column: the job row's stats, worker, host and
    finished time as a JSON array)."""
    if stored is None:
        return None
    value = json.loads(stored)
    if isinstance(value, dict) and len(value) == 1 and JOB_STATS_KEY in value:
        merged = job_stats(*json.loads(job)) if job else {}
        merged["priority"] = value[JOB_STATS_KEY]
        return merged
    return value


_ABSENT = object()

NODE_OUTPUT = (
    "CASE WHEN n.output IS NULL AND n.branch = '' AND n.outcome = 'success'"
    " AND n.node = p.input_node THEN p.item ELSE n.output END"
)
"""A node row ``n``'s output; an input node's is its pebble ``p``'s item, stored once."""

JOB_OF_NODE_COLUMN = (
    "CASE WHEN j.id IS NULL THEN NULL"
    " ELSE json_array(j.stats, j.worker, j.host, j.finished, j.started) END"
)
"""What :func:`node_stats` needs of the job row :data:`JOB_OF_NODE` joins, as one value."""
JOB_OF_NODE = (
    "LEFT JOIN jobs AS j ON n.stats LIKE '{\"@job\"%' AND j.id = n.pebble_id || '/' || n.node"
    " || CASE n.branch WHEN '' THEN '' ELSE '/' || n.branch END || '#' || (n.attempts + n.lost)"
)
"""Joins a node row ``n`` to the job row ``j`` its stats refer to (NULL columns if none)."""


def node_state(row: Sequence[Any], job_stats: str | None = None) -> NodeState:
    """Inverse of :func:`node_row` for the :data:`NODE_COLUMNS` part of a row.

    ``job_stats`` is the ``stats`` text of the job a stats reference names.
    """
    status, outcome, output, error, resolved_by, combined, attempts, lost, stats, n = row
    stats = node_stats(stats, job_stats)
    return NodeState(
        status=NodeStatus(status),
        outcome=None if outcome is None else Outcome(outcome),
        output=None if output is None else json.loads(output),
        error=error,
        resolved_by=resolved_by,
        combined=None if combined is None else Outcome(combined),
        attempts=attempts,
        lost=lost,
        stats=EMPTY if stats is None else frozen_map(stats),
        branches=n,
    )


def node_dict(row: Sequence[Any], job_stats: str | None = None) -> dict[str, Any]:
    """The :data:`NODE_COLUMNS` part of a row as a JSON-friendly dict (see :func:`node_state`)."""
    state = dict(zip(NODE_COLUMNS, row))
    state["output"] = loads(state["output"])
    state["stats"] = node_stats(state["stats"], job_stats) or {}
    return state


# ------------------------------------------------------------------------------- jobs

JOB_KEY_COLUMNS = (
    "id",
    "pebble_id",
    "node",
    "branch",
    "attempt",
    "priority",
    "worker_class",
    "not_before",
    "spec",
)
"""The columns :func:`job_spec` reads, in order."""

_IN_COLUMNS = {"id", "pebble_id", "node", "branch", "attempt", "priority", "worker_class"}


def _default(f: Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


_EXTRA = tuple(
    (f.name, _default(f))
    for f in fields(JobSpec)
    if f.name not in _IN_COLUMNS | {"args", "not_before"}
)
"""The JobSpec fields kept in the ``spec`` JSON when not default, with their defaults."""
_EXTRA_DEFAULTS = dict(_EXTRA)
_get_extra = attrgetter(*(name for name, _ in _EXTRA))


def _spec_extra(spec: JobSpec) -> dict[str, Any]:
    """The fields of ``spec`` that have no column of their own and differ from default."""
    extra: dict[str, Any] = {"args": dict(spec.args)}
    for (name, default), value in zip(_EXTRA, _get_extra(spec)):
        if value is not default and value != default:
            extra[name] = dict(value) if isinstance(value, Mapping) else value
    return extra


def job_row(spec: JobSpec, now: float) -> tuple[Any, ...]:
    """The values of the ``jobs`` insert in :mod:`cryoflow.store.batch` (created ``now``)."""
    return (
        spec.id,
        spec.pebble_id,
        spec.node,
        branch_key(spec.branch) if spec.branch else "",
        spec.attempt,
        spec.priority,
        spec.worker_class,
        dumps(_spec_extra(spec)),
        spec.not_before,
        now,
    )


def job_spec(row: Sequence[Any]) -> JobSpec:
    """Inverse of :func:`job_row` for a row of :data:`JOB_KEY_COLUMNS`."""
    id_, pebble_id, node, branch, attempt, priority, worker_class, not_before, spec = row
    extra = json.loads(spec)
    for name in ("args", "files", "config"):
        if name in extra:
            extra[name] = MappingProxyType(extra[name])
    if "post" in extra:
        extra["post"] = tuple(MappingProxyType(p) for p in extra["post"])
    return JobSpec(
        id=id_,
        pebble_id=pebble_id,
        node=node,
        branch=parse_branch(branch),
        attempt=attempt,
        priority=priority,
        worker_class=WorkerClass(worker_class),
        not_before=not_before,
        **extra,
    )


def spec_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A row of :data:`JOB_KEY_COLUMNS` as the whole JobSpec in JSON-friendly form."""
    keys = dict(zip(JOB_KEY_COLUMNS, row))
    spec: dict[str, Any] = {
        name: keys[name]
        for name in ("id", "pebble_id", "node", "attempt", "priority", "worker_class")
    }
    spec["branch"] = list(parse_branch(keys["branch"]))
    spec["not_before"] = keys["not_before"]
    defaults = {k: _plain(v) if isinstance(v, Mapping) else v for k, v in _EXTRA_DEFAULTS.items()}
    defaults["post"] = []
    spec.update(defaults)
    spec.update(json.loads(keys["spec"]))
    return spec
