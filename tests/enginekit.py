"""A deterministic driver for engine tests: runs queued jobs with fake outcomes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryoflow.engine.core import Engine
from cryoflow.engine.records import (
    Action,
    JobFinished,
    JobLost,
    JobSpec,
    PebbleAdded,
    PebbleDone,
    QueueJob,
)
from cryoflow.graph.expr import parse_expr
from cryoflow.graph.model import (
    ArgSource,
    ArgSpec,
    Graph,
    Node,
    Outcome,
    RunOn,
    frozen_map,
)

Behaviour = Callable[[JobSpec], tuple[Outcome, Any]]


def node(name: str, parents: tuple[str, ...] = ("entry",), **keys: Any) -> Node:
    """A node with keyword overrides; ``run_if`` may be given as text."""
    if isinstance(keys.get("run_if"), str):
        keys["run_if_text"] = keys["run_if"]
        keys["run_if"] = parse_expr(keys["run_if"])
    if "args" in keys:
        keys["args"] = frozen_map({k: _arg(v) for k, v in keys["args"].items()})
    if isinstance(keys.get("run_on"), str):
        keys["run_on"] = RunOn(keys["run_on"])
    keys.setdefault("module", "noop")
    keys.setdefault("is_input", parents == ("entry",) and not keys.get("is_global"))
    return Node(name=name, parents=parents, **keys)


def _arg(value: Any) -> ArgSpec:
    if not isinstance(value, dict):
        return ArgSpec(ArgSource.LITERAL, value=value)
    value = dict(value)
    has_default = "default" in value
    default = value.pop("default", None)
    kind = value.pop("type", None)
    for source in ("option", "config", "output", "stat"):
        if source in value:
            ref = value.pop(source)
            return ArgSpec(ArgSource(source), ref=ref, has_default=has_default, default=default,
                           type=kind, flags=frozen_map(value))
    return ArgSpec(ArgSource.DEFAULT, has_default=has_default, default=default, type=kind,
                   flags=frozen_map(value))


def graph(*nodes: Node) -> Graph:
    return Graph(name="t", nodes=frozen_map({n.name: n for n in nodes}))


def succeed(job: JobSpec) -> tuple[Outcome, Any]:
    """Default behaviour: success, echoing the args plus the node name."""
    return Outcome.SUCCESS, {**job.args, "by": job.node}


class Driver:
    """Feeds the engine, runs every queued job with a behaviour, records everything."""

    def __init__(self, g: Graph, behaviours: Mapping[str, Behaviour] | None = None,
                 **engine_kw: Any) -> None:
        self.engine = Engine(g, **engine_kw)
        self.behaviours = dict(behaviours or {})
        self.queue: list[JobSpec] = []
        self.ran: list[JobSpec] = []
        self.done: dict[int, PebbleDone] = {}
        self.actions: list[Action] = []
        self.now = 1000.0

    def add(self, item: Mapping[str, Any] | None = None, pebble_id: int = 1,
            input_node: str | None = None) -> None:
        name = input_node or self.engine.graph.input_nodes[0].name
        self._take(self.engine.handle(PebbleAdded(pebble_id, name, dict(item or {})), self.now))

    def _take(self, actions: list[Action]) -> None:
        self.actions.extend(actions)
        for action in actions:
            if isinstance(action, QueueJob):
                self.queue.append(action.job)
            elif isinstance(action, PebbleDone):
                self.done[action.pebble_id] = action

    def step(self) -> JobSpec:
        job = self.queue.pop(0)
        self.ran.append(job)
        behaviour = self.behaviours.get(job.node.split("@")[0], succeed)
        outcome, retval = behaviour(job)
        error = retval if outcome is not Outcome.SUCCESS and isinstance(retval, str) else None
        result = retval if outcome is Outcome.SUCCESS else None
        stats = {"runtime": 0.5, "worker": "w1", "node": "hostA"}
        self._take(self.engine.handle(
            JobFinished(job.id, outcome, result, error, stats), self.now))
        return job

    def lose(self) -> JobSpec:
        job = self.queue.pop(0)
        self._take(self.engine.handle(JobLost(job.id, "worker pid 1 died"), self.now))
        return job

    def run(self, limit: int = 10_000) -> None:
        while self.queue and limit:
            self.step()
            limit -= 1

    def ran_nodes(self) -> list[str]:
        return [j.node for j in self.ran]

    def state(self, name: str, branch: tuple[int, ...] = (), pebble_id: int = 1) -> Any:
        """Latest persisted state of a node instance (from the NodeChanged actions)."""
        from cryoflow.engine.records import NodeChanged

        found = None
        for action in self.actions:
            if (isinstance(action, NodeChanged) and action.pebble_id == pebble_id
                    and action.node == name and action.branch == branch):
                found = action.state
        return found


def fail(message: str = "boom") -> Behaviour:
    return lambda job: (Outcome.ERROR, message)
