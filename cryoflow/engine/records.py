"""Events the engine takes and actions it returns: frozen records, JSON-friendly.

A branch is a tuple of split indexes: ``()`` for the pebble itself, ``(3,)`` for the
fourth item of a split, ``(3, 0)`` for a split inside that branch. ``branch_key``
turns it into the string the store keys rows by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from cryoflow.graph.model import Outcome, WorkerClass, empty_map

Branch = tuple[int, ...]


def branch_key(branch: Branch) -> str:
    """``(1, 2)`` → ``"1.2"``; ``()`` → ``""``."""
    return ".".join(str(i) for i in branch)


def node_label(node: str, branch: Branch) -> str:
    """``Boom``, or in a split branch ``Boom[3]`` (nested: ``Boom[1.2]``)."""
    return f"{node}[{branch_key(branch)}]" if branch else node


def parse_branch(key: str) -> Branch:
    """Inverse of :func:`branch_key`."""
    return tuple(int(i) for i in key.split(".")) if key else ()


def job_id(pebble_id: int, node: str, branch: Branch, attempt: int) -> str:
    """The deterministic id of one attempt of one job: ``12/Wind/3#1``."""
    where = f"{pebble_id}/{node}"
    if branch:
        where += "/" + branch_key(branch)
    return f"{where}#{attempt}"


class NodeStatus(StrEnum):
    """Where a node stands for one pebble branch."""

    WAITING = "waiting"  #: not every parent has an outcome yet
    QUEUED = "queued"  #: resolved, its job(s) are queued or running
    DEFERRED = "deferred"  #: resolved and deferred until the rest of the pebble is done
    SPLIT = "split"  #: a split node whose branches are running
    DONE = "done"  #: has an outcome


class PebbleOutcome(StrEnum):
    """How a whole pebble ended."""

    COMPLETED = "completed"  #: every failure (if any) was handled
    FAILED = "failed"  #: a node ended error/timeout/cancel and nothing handled it


@dataclass(frozen=True, slots=True)
class NodeState:
    """The state of one node in one branch of one pebble."""

    status: NodeStatus = NodeStatus.WAITING
    outcome: Outcome | None = None
    output: Any = None
    error: str | None = None
    resolved_by: str | None = None
    """The parent whose outcome resolved this node (``parent`` in references)."""
    combined: Outcome | None = None
    """The parents' combined outcome when the node was resolved."""
    attempts: int = 0
    lost: int = 0
    """Attempts whose worker died; they do not count against ``retries``."""
    stats: Mapping[str, Any] = field(default_factory=empty_map)
    branches: int = 0
    """For a split node: how many items its split list had."""


_NODE_FIELDS = tuple(f.name for f in fields(NodeState))
_new = object.__new__
_set = object.__setattr__


def evolve(state: NodeState, **changes: Any) -> NodeState:
    """``dataclasses.replace`` for a :class:`NodeState`, a few times faster (the engine
    makes one per node change)."""
    out = _new(NodeState)
    for name in _NODE_FIELDS:
        _set(out, name, changes[name] if name in changes else getattr(state, name))
    return out


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class PebbleAdded:
    """An input node emitted ``item``; the head assigned ``pebble_id``."""

    pebble_id: int
    input_node: str
    item: Mapping[str, Any]


@dataclass(frozen=True)
class JobFinished:
    """A job ended on a worker (or could not start)."""

    job_id: str
    outcome: Outcome
    retval: Any = None
    error: str | None = None
    stats: Mapping[str, Any] = field(default_factory=empty_map)
    job: JobSpec | None = None
    """The job itself when the caller has it (saves reading its id)."""


@dataclass(frozen=True)
class JobLost:
    """The worker running a job died or its lease expired; the job did not report."""

    job_id: str
    reason: str = "worker lost"
    charged: bool = True
    """Does the loss count towards the poison limit? Not when the head itself stopped
    (the job is run again as a new attempt either way)."""
    job: JobSpec | None = None
    """The job itself when the caller has it (saves reading its id)."""


@dataclass(frozen=True)
class PebbleCancelled:
    """A user (or a shutdown) cancelled a pebble."""

    pebble_id: int
    reason: str = "cancelled"


@dataclass(frozen=True)
class PebbleRetried:
    """Run a failed pebble again from its failed nodes (it must be restored first)."""

    pebble_id: int


Event = PebbleAdded | JobFinished | JobLost | PebbleCancelled | PebbleRetried


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to queue: a node of a pebble branch with its arguments resolved."""

    id: str
    pebble_id: int
    node: str
    branch: Branch
    attempt: int
    args: Mapping[str, Any]
    priority: int
    worker_class: WorkerClass
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=empty_map)
    """Per argument with a ``type`` (file, dir, tempdir): its type and flags."""
    ccnode: str | None = None
    workdir: str | None = None
    not_before: float = 0.0
    """Do not start before this time (retry delays)."""
    timeout_s: float | None = None
    post: tuple[Mapping[str, Any], ...] = ()
    """Resolved post specs: ``{"output", "target", "basename"}``."""
    deferred: bool = False
    config: Mapping[str, Any] = field(default_factory=empty_map)


@dataclass(frozen=True)
class QueueJob:
    """Put ``job`` into the durable queue."""

    job: JobSpec


@dataclass(frozen=True)
class CancelJob:
    """Stop a queued or running job (its pebble was cancelled)."""

    job_id: str


@dataclass(frozen=True)
class NodeChanged:
    """Persist the new state of one node branch."""

    pebble_id: int
    node: str
    branch: Branch
    state: NodeState


@dataclass(frozen=True)
class PebbleDone:
    """Every node of the pebble has an outcome; remove its tempdirs."""

    pebble_id: int
    outcome: PebbleOutcome
    failed_nodes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class NodeRemoved:
    """Forget the state of one node branch (a retried pebble runs it again)."""

    pebble_id: int
    node: str
    branch: Branch


@dataclass(frozen=True)
class PebbleReopened:
    """A finished pebble is active again (retried)."""

    pebble_id: int


Action = QueueJob | CancelJob | NodeChanged | PebbleDone | NodeRemoved | PebbleReopened
