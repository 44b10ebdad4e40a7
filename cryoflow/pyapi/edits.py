"""Changes to a stored flow definition, as ``cryoflow flow node|edge`` makes them.

Pure functions from one :class:`FlowDefinition` to the next; an edge ``FROM TO`` means
``TO`` depends on ``FROM``. A change that would leave an unknown node or a cycle raises
:class:`~cryoflow.errors.GraphError`. Once edited, a definition has no flow string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cryoflow.errors import GraphError
from cryoflow.graph.nodes import name_problem
from cryoflow.pyapi.catalog import FlowDefinition, check_acyclic


def add_node(flow: FlowDefinition, name: str, task: str | None = None,
             after: tuple[str, ...] = ()) -> FlowDefinition:
    """``name`` added (depending on ``after``), with ``task`` as its function reference."""
    problem = name_problem(name)
    if problem:
        raise GraphError(problem)
    if name in flow.nodes:
        raise GraphError(f"flow {flow.name!r} already has a node {name!r}")
    if task is not None and ":" not in task:
        raise GraphError(f"task {task!r}: write 'package.module:function'")
    tasks = dict(flow.tasks)
    if task is not None:
        tasks[name] = {"function": task}
    return _checked(flow, {**flow.nodes, name: tuple(after)}, tasks)


def delete_node(flow: FlowDefinition, name: str) -> FlowDefinition:
    """``name`` removed, with every edge to or from it."""
    _known(flow, name)
    nodes = {n: tuple(d for d in deps if d != name) for n, deps in flow.nodes.items()
             if n != name}
    return _checked(flow, nodes, {n: t for n, t in flow.tasks.items() if n != name})


def add_edge(flow: FlowDefinition, source: str, target: str) -> FlowDefinition:
    """``target`` depends on ``source`` from now on."""
    _known(flow, source, target)
    if source in flow.nodes[target]:
        raise GraphError(f"{target!r} already depends on {source!r}")
    return _checked(flow, {**flow.nodes, target: (*flow.nodes[target], source)}, flow.tasks)


def delete_edge(flow: FlowDefinition, source: str, target: str) -> FlowDefinition:
    """``target`` no longer depends on ``source``."""
    _known(flow, source, target)
    if source not in flow.nodes[target]:
        raise GraphError(f"there is no edge {source} -> {target}")
    deps = tuple(d for d in flow.nodes[target] if d != source)
    return _checked(flow, {**flow.nodes, target: deps}, flow.tasks)


def invert_edge(flow: FlowDefinition, source: str, target: str) -> FlowDefinition:
    """The edge ``source -> target`` turned into ``target -> source``."""
    return add_edge(delete_edge(flow, source, target), target, source)


def _known(flow: FlowDefinition, *names: str) -> None:
    for name in names:
        if name not in flow.nodes:
            raise GraphError(f"flow {flow.name!r} has no node {name!r} "
                             f"(nodes: {', '.join(flow.nodes) or 'none'})")


def _checked(flow: FlowDefinition, nodes: dict[str, tuple[str, ...]],
             tasks: Mapping[str, Any]) -> FlowDefinition:
    check_acyclic(nodes)
    return replace(flow, nodes=nodes, tasks=dict(tasks), text=None)
