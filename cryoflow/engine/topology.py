"""Static facts about a graph that the engine needs at every step, computed once.

*Depth* counts the splits a node sits inside: a node's per-branch states live at
branches of that length. A split node is one deeper than its parents (its items run
per branch); a merge node's children are one shallower than the merge node, because
the branches join there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryoflow.graph.instances import base_name
from cryoflow.graph.model import ENTRY, Graph, Node, RunOn


@dataclass(frozen=True)
class Topology:
    """Depths, split/merge pairs and the regions between them."""

    depth: Mapping[str, int]
    out_depth: Mapping[str, int]
    split_of: Mapping[str, str]
    """merge node → the split node whose branches it joins."""
    region: Mapping[str, tuple[str, ...]]
    """merge node → every node from its split node to it (both included)."""
    merged_splits: frozenset[str]
    after_deferred: frozenset[str]
    """Deferred nodes and everything downstream of them."""
    timeout_takers: frozenset[str]
    """Nodes that have a child with ``runOn: timeout``."""
    regular: tuple[str, ...]
    """Non-global nodes, in topological order."""
    globals: tuple[str, ...]


def build_topology(graph: Graph) -> Topology:
    """Compute the :class:`Topology` of a checked graph (nodes in topological order)."""
    depth, out_depth, opener = _depths(graph)
    split_of: dict[str, str] = {}
    for node in graph:
        split = opener.get(node.name)
        if node.merge and split:
            split_of[node.name] = split
    region = {m: _region(graph, s, m) for m, s in split_of.items()}
    return Topology(
        depth=depth,
        out_depth=out_depth,
        split_of=split_of,
        region=region,
        merged_splits=frozenset(split_of.values()),
        after_deferred=_downstream(graph, {n.name for n in graph if n.deferred}),
        timeout_takers=frozenset(
            p for n in graph if n.run_on is RunOn.TIMEOUT for p in n.parents
        ),
        regular=tuple(n.name for n in graph if not n.is_global),
        globals=tuple(n.name for n in graph if n.is_global),
    )


def _depths(graph: Graph) -> tuple[dict[str, int], dict[str, int], dict[str, str | None]]:
    depth: dict[str, int] = {}
    out_depth: dict[str, int] = {ENTRY: 0}
    opener: dict[str, str | None] = {ENTRY: None}
    stack_of: dict[str, tuple[str, ...]] = {ENTRY: ()}
    for node in graph:
        parents = [p for p in node.parents if p in out_depth]
        base = max((out_depth[p] for p in parents), default=0)
        stack = max((stack_of[p] for p in parents), key=len, default=())
        if node.split_on:
            base += 1
            stack = (*stack, node.name)
        depth[node.name] = base
        opener[node.name] = stack[-1] if stack else None
        if node.merge and stack:
            stack = stack[:-1]
            base -= 1
        out_depth[node.name] = base
        stack_of[node.name] = stack
    return depth, out_depth, opener


def _region(graph: Graph, split: str, merge: str) -> tuple[str, ...]:
    down = _downstream(graph, {split})
    up = _upstream(graph, merge)
    return tuple(n.name for n in graph if n.name in down and n.name in up)


def _downstream(graph: Graph, roots: set[str]) -> frozenset[str]:
    seen = set(roots)
    for node in graph:
        if any(p in seen for p in node.parents):
            seen.add(node.name)
    return frozenset(seen)


def _upstream(graph: Graph, name: str) -> frozenset[str]:
    seen = {name}
    for node in reversed(list(graph)):
        if node.name in seen:
            seen.update(node.parents)
    return frozenset(seen)


def node_of(graph: Graph, name: str) -> Node:
    """The graph node behind an instance name (``Handler@Wind`` → ``Handler``)."""
    return graph.nodes[base_name(name)]
