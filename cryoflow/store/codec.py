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


def rounded(stats: Mapping[str, Any]) -> dict[str, Any]:
    """``stats`` with float values rounded to microseconds (what a job's timings hold)."""
    return {k: round(v, 6) if type(v) is float else v for k, v in stats.items()}


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


def node_stats(stored: str | None, job_stats: str | None) -> Any:
    """A node's stats as a dict from its stored text and, for a reference, its job's."""
    if stored is None:
        return None
    value = json.loads(stored)
    if isinstance(value, dict) and len(value) == 1 and JOB_STATS_KEY in value:
        merged = json.loads(job_stats) if job_stats else {}
        merged["priority"] = value[JOB_STATS_KEY]
        return merged
    return value


_ABSENT = object()

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
