"""What a run of a Python workflow or operation reports: frozen records built from the store.

Node statuses use the Cloudmesh flow vocabulary: ``pending`` (not started yet),
``running``, ``finished``, ``error`` (error, timeout or cancel), and ``skipped`` for a
node that never started because a dependency failed. A run is ``running``,
``finished`` or ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryoflow.errors import CryoflowError
from cryoflow.graph.instances import base_name
from cryoflow.graph.model import ENTRY, Graph, empty_map


class NodeStatus(StrEnum):
    """Where one node of a run stands."""

    PENDING = "pending"  #: waiting for its dependencies or for a worker
    RUNNING = "running"  #: its job is running
    FINISHED = "finished"  #: it returned
    ERROR = "error"  #: it raised, timed out or was cancelled
    SKIPPED = "skipped"  #: it never started because a dependency failed


class RunStatus(StrEnum):
    """Where a whole run stands."""

    RUNNING = "running"  #: some node has not ended yet
    FINISHED = "finished"  #: every node finished
    FAILED = "failed"  #: a node ended in error; its dependents never started


class RunFailed(CryoflowError):
    """A run ended ``failed``; ``record`` says which node failed and which never started."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        super().__init__(record.summary())


@dataclass(frozen=True)
class NodeRun:
    """One node in one run."""

    name: str
    status: NodeStatus
    dependencies: tuple[str, ...] = ()
    result: Any = None
    """The node's return value (its output's ``result``)."""
    output: Any = None
    """The whole output the node left in the store."""
    error: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run: the status of every node, their results, and what failed."""

    workflow: str
    run_id: int
    status: RunStatus
    nodes: Mapping[str, NodeRun] = field(default_factory=empty_map)
    state_dir: str = ""
    started: float | None = None
    finished: float | None = None
    status_url: str | None = None

    @property
    def results(self) -> dict[str, Any]:
        """Every finished node's return value."""
        return {n.name: n.result for n in self.nodes.values() if n.status is NodeStatus.FINISHED}

    @property
    def failed(self) -> tuple[str, ...]:
        """Nodes that ended in error."""
        return tuple(n.name for n in self.nodes.values() if n.status is NodeStatus.ERROR)

    @property
    def never_started(self) -> tuple[str, ...]:
        """Nodes that did not start because a dependency failed."""
        return tuple(n.name for n in self.nodes.values() if n.status is NodeStatus.SKIPPED)

    @property
    def done(self) -> bool:
        return self.status is not RunStatus.RUNNING

    def summary(self) -> str:
        """One sentence about the run."""
        text = f"run {self.run_id} of {self.workflow} {self.status.value}"
        if self.failed:
            errors = "; ".join(f"{n}: {self.nodes[n].error}" for n in self.failed)
            text += f": {', '.join(self.failed)} failed ({errors})"
        if self.never_started:
            text += f"; never started: {', '.join(self.never_started)}"
        return text

    def raise_for_status(self) -> RunRecord:
        """Raise :class:`RunFailed` for a failed run; return the record otherwise."""
        if self.status is RunStatus.FAILED:
            raise RunFailed(self)
        return self


def record_of(graph: Graph, pebble: Mapping[str, Any], running: Iterable[str] = (),
              **where: Any) -> RunRecord:
    """The record of the run that is pebble ``pebble`` (a store row with ``nodes``)."""
    busy = {base_name(name) for name in running}
    active = pebble["state"] == "active"
    nodes = {n.name: _node_run(n.name, tuple(p for p in n.parents if p != ENTRY),
                               pebble["nodes"].get(n.name), active, n.name in busy)
             for n in graph}
    if active:
        status = RunStatus.RUNNING
    else:
        status = RunStatus.FINISHED if pebble["outcome"] == "completed" else RunStatus.FAILED
    return RunRecord(workflow=graph.name, run_id=int(pebble["id"]), status=status,
                     nodes=nodes, started=pebble.get("created"), finished=pebble.get("finished"),
                     **where)


def _node_run(name: str, deps: tuple[str, ...], branches: Mapping[str, Any] | None,
              active: bool, running: bool) -> NodeRun:
    state = (branches or {}).get("") or next(iter((branches or {}).values()), None)
    if state is None:
        status = NodeStatus.PENDING if active else NodeStatus.SKIPPED
        return NodeRun(name, status, deps)
    output = state.get("output")
    result = output.get("result", output) if isinstance(output, Mapping) else output
    return NodeRun(name, node_status(state, running), deps, result, output, state.get("error"))


def node_status(state: Mapping[str, Any], running: bool) -> NodeStatus:
    """A node's status from its stored state (and whether its job runs now)."""
    if state.get("status") != "done":
        return NodeStatus.RUNNING if running else NodeStatus.PENDING
    outcome = state.get("outcome")
    if outcome == "success":
        return NodeStatus.FINISHED
    return NodeStatus.SKIPPED if outcome == "skipped" else NodeStatus.ERROR
