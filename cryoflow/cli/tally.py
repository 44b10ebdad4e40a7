"""What one run of ``ccworkflow`` did: counts of this run only, gathered from the head.

A :class:`RunTally` listens to the head's committed actions, so its counts are those
of this run (a resumed state folder's earlier pebbles are not in them), and it keeps
the first failures with their error text for the end-of-run summary.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from cryoflow.engine.records import (
    Action,
    NodeChanged,
    NodeStatus,
    PebbleDone,
    PebbleOutcome,
    job_id,
    node_label,
)
from cryoflow.store.runs import NodeShapes, branch_depth

FAILED_OUTCOMES = ("error", "timeout", "cancel")
KEPT_FAILURES = 20
NO_ERROR_TEXT = "no error of its own: a parent's failure reached it"


@dataclass(frozen=True)
class Failure:
    """A node that ended error, timeout or cancel in one pebble branch."""

    pebble_id: int
    node: str
    branch: tuple[int, ...]
    outcome: str
    error: str
    attempts: int

    @property
    def label(self) -> str:
        """``Boom`` or, in a split branch, ``Boom[3]`` (as a pebble's failed nodes say)."""
        return node_label(self.node, self.branch)

    @property
    def where(self) -> str:
        return f"pebble {self.pebble_id}, node {self.label}"

    @property
    def job_prefix(self) -> str:
        """The start of the ids of this node branch's jobs (every attempt)."""
        return job_id(self.pebble_id, self.node, self.branch, 0)[:-1]


@dataclass
class RunTally:
    """Counts of this run: per node and outcome, per pebble outcome, and the failures."""

    started: float = field(default_factory=time.monotonic)
    nodes: dict[str, Counter[str]] = field(default_factory=dict)
    pebbles: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    fates: dict[tuple[int, str], str] = field(default_factory=dict)
    """``(pebble id, label)`` of a kept failure: "failed" or "handled" once the pebble ended."""
    changes: int = 0
    """Bumped on every counted change, so a periodic line can tell nothing happened."""

    shapes: NodeShapes = field(default_factory=NodeShapes)
    """The graph's merge nodes, for what counts as a run (:mod:`cryoflow.store.runs`)."""

    def __call__(self, action: Action) -> None:
        """The head's listener: every committed action."""
        if isinstance(action, NodeChanged) and action.state.status is NodeStatus.DONE:
            if self._is_run(action):
                self._node_done(action)
        elif isinstance(action, PebbleDone):
            self.pebbles[action.outcome.value] += 1
            self._pebble_done(action)
            self.changes += 1

    def _is_run(self, action: NodeChanged) -> bool:
        """Whether the row is one run of the node, as ``ccstatus`` and the API count it."""
        return self.shapes.counts_done(action.node, branch_depth(action.branch),
                                       action.state.branches > 0)

    def _node_done(self, action: NodeChanged) -> None:
        state = action.state
        outcome = state.outcome.value if state.outcome is not None else "done"
        self.nodes.setdefault(action.node, Counter())[outcome] += 1
        self.changes += 1
        if outcome in FAILED_OUTCOMES:
            self.failure_count += 1
            if len(self.failures) < KEPT_FAILURES:
                self.failures.append(Failure(
                    action.pebble_id, action.node, tuple(action.branch), outcome,
                    state.error or NO_ERROR_TEXT, state.attempts))

    def _pebble_done(self, done: PebbleDone) -> None:
        failed = done.failed_nodes if done.outcome is PebbleOutcome.FAILED else ()
        for failure in self.failures:
            if failure.pebble_id == done.pebble_id:
                fate = "failed" if failure.label in failed else "handled"
                self.fates[(failure.pebble_id, failure.label)] = fate

    def fate(self, failure: Failure) -> str:
        """"failed" (it failed its pebble), "handled", or "unfinished" (the pebble is active)."""
        return self.fates.get((failure.pebble_id, failure.label), "unfinished")

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def finished(self) -> int:
        return sum(self.pebbles.values())

    def by_fate(self) -> list[tuple[str, Failure]]:
        """The kept failures with their fate: those that failed a pebble first."""
        order = {"failed": 0, "unfinished": 1, "handled": 2}
        pairs = [(self.fate(f), f) for f in self.failures]
        return sorted(pairs, key=lambda pair: order[pair[0]])
