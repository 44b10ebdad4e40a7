"""What a node's count means, the same in ``ccstatus``, the API, the web view and the
end-of-run summary of ``ccworkflow``: how many times the node ran.

A node counts one for each pebble branch it ran in (a job, or a skip), so a split
over five items counts five for the split node and for each node below it. The row that
joins a split's branches back into lists is not a run and is not counted, except for a
merge node: its branches end in one join, which counts once with the combined outcome
(``error`` when any branch of its split failed), and its branches are not counted once
they are done. Unfinished rows (waiting, queued, running, split) always count, so the
work in progress shows.

A head records its graph's :class:`NodeShapes` in the store, so readers that have no
graph (``ccstatus --state``) count and order the nodes as the head does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryoflow.engine.topology import build_topology
from cryoflow.graph.model import Graph

META_KEY = "node_shapes"
"""The ``meta`` key under which a head records its graph's :class:`NodeShapes`."""


@dataclass(frozen=True)
class NodeShapes:
    """A graph's node order and, per merge node, the depth of its per-branch rows."""

    order: tuple[str, ...] = ()
    merge_depths: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, graph: Graph) -> NodeShapes:
        topology = build_topology(graph)
        return cls(order=tuple(node.name for node in graph),
                   merge_depths={m: topology.depth[m] for m in topology.split_of})

    def dumps(self) -> str:
        return json.dumps({"order": list(self.order), "merge_depths": dict(self.merge_depths)})

    @classmethod
    def loads(cls, text: str | None) -> NodeShapes:
        """The shapes a head recorded; empty ones when none were (or they are unreadable)."""
        try:
            data: Any = json.loads(text) if text else {}
            order = tuple(str(name) for name in data.get("order", ()))
            depths = {str(k): int(v) for k, v in data.get("merge_depths", {}).items()}
        except (ValueError, TypeError, AttributeError):
            return cls()
        return cls(order=order, merge_depths=depths)

    def counts_done(self, node: str, depth: int, joined: bool) -> bool:
        """Whether a finished row of ``node`` at a branch ``depth`` deep is a run.

        ``joined`` says the row sums a split's branches.
        """
        merge_depth = self.merge_depths.get(node)
        if merge_depth is None:
            return not joined
        return depth < merge_depth

    def ordered(self, names: Iterable[str]) -> list[str]:
        """``names`` in graph order; names the graph does not have last, by name."""
        place = {name: i for i, name in enumerate(self.order)}
        return sorted(names, key=lambda name: (place.get(name, len(place)), name))


def branch_depth(branch: str | Iterable[int]) -> int:
    """How many splits deep a branch is: ``""`` 0, ``"3"`` 1, ``"3.0"`` 2 (or a tuple)."""
    if isinstance(branch, str):
        return branch.count(".") + 1 if branch else 0
    return len(tuple(branch))
