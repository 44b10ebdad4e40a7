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

    __slots__ = ("id", "input_node", "item", "states", "open_total", "open_main", "left")

    def __init__(self, pebble_id: int, input_node: str, item: dict[str, Any]) -> None:
        self.id = pebble_id
        self.input_node = input_node
        self.item = item
        self.states: dict[tuple[str, Branch], NodeState] = {}
        self.open_total = 0
        self.open_main = 0
        self.left: dict[tuple[str, Branch], int] = {}
        """Branches not yet done per split join, counted once, then counted down."""

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


    def branches_left(self, name: str, branch: Branch, count: int) -> int:
        """How many of ``name``'s ``count`` branches under ``branch`` are not done yet.

        Called once per branch that ends: the first call counts, later ones count down,
        so joining N branches costs O(N), not O(N²).
        """
        key = (name, branch)
        left = self.left.get(key)
        if left is None:
            left = sum(1 for i in range(count) if not self._done(name, (*branch, i)))
        else:
            left -= 1
        if left <= 0 and any(not self._done(name, (*branch, i)) for i in range(count)):
            left = sum(1 for i in range(count) if not self._done(name, (*branch, i)))
        self.left[key] = left
        if left <= 0:
            del self.left[key]
        return left

    def _done(self, name: str, branch: Branch) -> bool:
        state = self.states.get((name, branch))
        return state is not None and state.status is NodeStatus.DONE


def visible_state(pebble: PebbleState, name: str, branch: Branch, depth: int) -> NodeState | None:
    """The finished state of ``name`` seen from ``branch``: its own branch, else joined."""
    for length in range(min(len(branch), depth), -1, -1):
        state = pebble.states.get((name, branch[:length]))
        if state is not None and state.status is NodeStatus.DONE:
            return state
    return None
