"""Input watchers: folders (``dirwatch``) and HTTP posts (``netwatch``).

The watchers only turn the outside world into items and offer them to the head through
the input handler; the head commits each item as a pebble (with its seen or
idempotency key, in one transaction) before a watcher acknowledges it.

This module holds what both share: the handler interface they use, the small
:class:`HeadPort` through which they ask the head what they need (never the head
itself), reading module args into typed values, and the intake gate (head stopping,
``restrictions`` on the input node).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, Protocol

from cryoflow.errors import ExprError, InputError
from cryoflow.graph.model import Node


class HeadPort(Protocol):
    """What a watcher may ask of the head (:class:`cryoflow.daemon.inputs.HeadLink`)."""

    @property
    def accepting(self) -> bool:
        """False once the head is stopping."""
        ...

    @property
    def unfinished(self) -> int:
        """Pebbles accepted and not finished yet."""
        ...

    @property
    def node_order(self) -> tuple[str, ...]:
        """The graph's node names in the order a pebble's status lists them."""
        ...

    def status_value(self, channel: str, param: str) -> Any:
        """The latest status value ``channel.param`` (None when there is none)."""
        ...

    def has_seen(self, key: str) -> bool:
        """Was an item with this seen key committed before?"""
        ...

    def pebble(self, pebble_id: int) -> Mapping[str, Any] | None:
        """A pebble as the store holds it (input node, state, node states), or None."""
        ...

    def failpoint(self, name: str) -> None:
        """Pass the named fault-test point (``CRYOFLOW_FAILPOINTS``)."""
        ...

    def release(self) -> None:
        """Close what the calling thread opened (its store reader); it may ask again."""
        ...


class Handler(Protocol):
    """What a watcher needs of :class:`cryoflow.daemon.inputs.InputHandler`."""

    node: Node
    head: HeadPort

    def submit(
        self, item: Mapping[str, Any], *, idem_key: str | None = None,
        seen_key: str | None = None,
    ) -> Future[int]:
        """Offer an item; the future gives the pebble id once it is committed."""
        ...


def intake_paused(handler: Handler) -> str | None:
    """Why the input node must not offer items now, or None when it may.

    It must wait while the head is shutting down and while one of the node's
    ``restrictions`` does not hold (a missing status value does not hold).
    """
    head = handler.head
    if not head.accepting:
        return "the workflow is shutting down"
    for rule in handler.node.restrictions:
        try:
            held = rule.holds(head.status_value(rule.channel, rule.param))
        except ExprError as exc:
            return str(exc)
        if not held:
            return f"intake is paused: restriction {rule.text} does not hold"
    return None


def failpoint(handler: Handler, name: str) -> None:
    """Pass the named fault-test point of the head (``CRYOFLOW_FAILPOINTS``), if it has any."""
    handler.head.failpoint(name)


class Args:
    """Typed reading of an input module's args, with messages that name node and arg."""

    def __init__(self, node: str, args: Mapping[str, Any]) -> None:
        self.node = node
        self.args = args

    def problem(self, name: str, what: str) -> InputError:
        return InputError(f"input node '{self.node}': argument '{name}' {what}")

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.args.get(name, default)
        if value is None or isinstance(value, str):
            return value
        raise self.problem(name, f"must be a string, not {value!r}")

    def required_text(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise self.problem(name, "is required")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.args.get(name, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        raise self.problem(name, f"must be true or false, not {value!r}")

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.args.get(name, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.problem(name, f"must be a number, not {value!r}") from None
        if not number >= minimum or number == float("inf"):
            raise self.problem(name, f"must be a number of at least {minimum}, not {value!r}")
        return number

    def integer(self, name: str, default: int, *, minimum: int = 0,
                maximum: int | None = None) -> int:
        value = self.args.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.problem(name, f"must be a whole number, not {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise self.problem(name, f"must be a whole number, not {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = "" if maximum is None else f" and at most {maximum}"
            raise self.problem(name, f"must be at least {minimum}{upper}, not {number}")
        return number

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A list of strings, or one string of comma-separated items."""
        value = self.args.get(name)
        if value is None:
            return default
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise self.problem(name, f"must be a list of strings, not {value!r}")


_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
