"""The in-memory state of one active pebble, as the engine keeps it."""

from __future__ import annotations

from typing import Any

from cryoflow.engine.records import Branch, NodeState, NodeStatus

OPEN = frozenset({NodeStatus.WAITING, NodeStatus.QUEUED, NodeStatus.DEFERRED, NodeStatus.SPLIT})
"""Statuses of node instances that keep a pebble from being done."""


class PebbleState:
    """Node states keyed by ``(node, branch)``, with counts of open instances.

    ``open_main`` counts open instances that hold back deferred nodes (everything not
    deferred and not downstream of a deferred node).
    """

    __slots__ = ("id", "input_node", "item", "states", "open_total", "open_main")

    def __init__(self, pebble_id: int, input_node: str, item: dict[str, Any]) -> None:
        self.id = pebble_id
        self.input_node = input_node
        self.item = item
        self.states: dict[tuple[str, Branch], NodeState] = {}
        self.open_total = 0
        self.open_main = 0

    def put(self, name: str, branch: Branch, state: NodeState, is_main: bool) -> None:
        """Store ``state`` and keep the open counts right."""
        old = self.states.get((name, branch))
        delta = (state.status in OPEN) - (old is not None and old.status in OPEN)
        self.open_total += delta
        if is_main:
            self.open_main += delta
        self.states[(name, branch)] = state


    def remove(self, name: str, branch: Branch, is_main: bool) -> None:
        """Forget a node instance, keeping the open counts right."""
        old = self.states.pop((name, branch), None)
        if old is not None and old.status in OPEN:
            self.open_total -= 1
            if is_main:
                self.open_main -= 1


def visible_state(pebble: PebbleState, name: str, branch: Branch, depth: int) -> NodeState | None:
    """The finished state of ``name`` seen from ``branch``: its own branch, else joined."""
    for length in range(min(len(branch), depth), -1, -1):
        state = pebble.states.get((name, branch[:length]))
        if state is not None and state.status is NodeStatus.DONE:
            return state
    return None
