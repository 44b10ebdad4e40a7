"""Graphs that grow while they run: the pure part.

A running job may add a child node below its own node, or insert one between its node
and that node's children (they then wait for the new node instead). The new node is a
function spec (``{"nodename", "funcname", "args", "kwargs", "conditions":
{"executortype", "dependencies"}, ...}``); besides the running node it may depend on
other existing nodes. Nothing upstream changes; a name already used and a request
that would close a cycle are refused. :func:`grow_graph` makes the new graph;
:func:`cryoflow.daemon.root.grow_head` applies it to a running head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cryoflow.errors import GraphError
from cryoflow.graph.flowgraph import PYTHON_MODULE, nodes_graph, python_args
from cryoflow.graph.funcspec import FUNCSPEC_MODULE, spec_node, spec_problems
from cryoflow.graph.model import ENTRY, ArgSource, Graph, Node


class GrowError(GraphError):
    """A request to add a node to a running graph was refused."""


def job_node(job_id: str) -> str:
    """``"3/gen/1#2"`` → ``"gen"``."""
    return job_id.rpartition("#")[0].split("/")[1]


def child_node(spec: Mapping[str, Any], parent: str) -> Node:
    """The node for ``spec``, depending on ``parent`` and the spec's own dependencies."""
    problems = spec_problems(spec)
    if problems:
        raise GrowError("; ".join(problems))
    conditions = dict(spec.get("conditions") or {})
    deps = [parent, *(d for d in conditions.get("dependencies") or () if d != parent)]
    return spec_node({**spec, "conditions": {**conditions, "dependencies": deps}})


def grow_graph(graph: Graph, parent: str, child: Node, *, insert: bool = False) -> Graph:
    """``graph`` with ``child`` added below ``parent`` (between it and its children)."""
    if parent not in graph.nodes:
        raise GrowError(f"there is no node {parent!r} to add a child to")
    if child.name in graph.nodes or child.name == ENTRY:
        raise GrowError(f"there is already a node {child.name!r}; choose another nodename")
    nodes = list(graph.nodes.values())
    if insert:
        below = set(graph.children_of(parent))
        nodes = [_reparent(n, parent, child.name) if n.name in below else n for n in nodes]
    try:
        grown = nodes_graph([*nodes, child], name=graph.name, source=graph.source)
    except GraphError as exc:
        raise GrowError(f"adding {child.name!r} below {parent!r} is refused: {exc}") from None
    return replace(graph, nodes=grown.nodes, children=grown.children, flow=None)


def _reparent(node: Node, old: str, new: str) -> Node:
    parents = tuple(new if p == old else p for p in node.parents)
    if node.module not in (PYTHON_MODULE, FUNCSPEC_MODULE) or "callable" not in node.args:
        return replace(node, parents=parents)
    literals = {k: spec.value for k, spec in node.args.items()
                if spec.source is ArgSource.LITERAL and k not in ("callable", "parents", "path")}
    path = node.args["path"].value if "path" in node.args else None
    args = python_args(node.args["callable"].value, parents, path, **literals)
    return replace(node, parents=parents, args=args)
