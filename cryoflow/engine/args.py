"""Argument resolution (docs/semantics.md, "Arguments") and runIf references, as pure functions.

A :class:`Scope` answers "what is the value of this reference for this node, in this
branch of this pebble". It reads the pebble's node states through a lookup function
the engine passes in, so nothing here knows how states are stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryoflow.engine.records import NodeState
from cryoflow.errors import ArgumentError
from cryoflow.graph.model import ArgSource, ArgSpec, Node, Outcome

_NOTHING = object()

StateLookup = Callable[[str], NodeState | None]
"""Node name → its finished state visible from the current branch, or None."""


def option_key(name: str) -> str:
    """Dashes and underscores in option names are the same option."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class Scope:
    """Where references are resolved: one node, one branch, one pebble."""

    node: Node
    parents: tuple[str, ...]
    """Parent order for ``parent.*``: the resolving parent first, then downstreamOf order."""
    lookup: StateLookup
    options: Mapping[str, Any]
    config: Mapping[str, Any]

    def output(self, ref: str) -> tuple[Any, bool]:
        """Value of ``parent.key``/``Name.key`` and whether the node it names succeeded."""
        name, _, key = ref.partition(".")
        for state in self._states(name):
            if key == "error" and state.outcome is not Outcome.SUCCESS:
                return state.error, False
            if isinstance(state.output, Mapping) and key in state.output:
                return state.output[key], state.outcome is Outcome.SUCCESS
        succeeded = any(s.outcome is Outcome.SUCCESS for s in self._states(name))
        return _NOTHING, succeeded

    def host_of(self, ref: str) -> str | None:
        """The host that ran the node an ``output`` reference reads from (its stats)."""
        name, _, key = ref.partition(".")
        for state in self._states(name):
            if isinstance(state.output, Mapping) and key in state.output:
                host = state.stats.get("node")
                return str(host) if host else None
        return None

    def stat(self, ref: str) -> Any:
        """Value of ``parent.p``/``Name.p`` where p is a runtime statistic."""
        name, _, key = ref.partition(".")
        for state in self._states(name):
            if key == "attempts":
                return state.attempts
            if key in state.stats:
                return state.stats[key]
        return _NOTHING

    def option(self, name: str) -> Any:
        return self.options.get(option_key(name))

    def config_value(self, key: str) -> Any:
        root: Any = self.config
        path = (self.node.config_root.split(".") if self.node.config_root else []) + key.split(".")
        for part in path:
            if not isinstance(root, Mapping) or part not in root:
                return self._workflow_config(key)
            root = root[part]
        return root

    def _workflow_config(self, key: str) -> Any:
        root: Any = self.config
        for part in key.split("."):
            if not isinstance(root, Mapping) or part not in root:
                return _NOTHING
            root = root[part]
        return root

    def _states(self, name: str) -> list[NodeState]:
        names = self.parents if name == "parent" else (name,)
        return [s for s in (self.lookup(n) for n in names) if s is not None]


def resolve_arg(scope: Scope, name: str, spec: ArgSpec) -> Any:
    """Resolve one argument; raise :class:`ArgumentError` when it cannot be."""
    value, referenced_failed = _raw_value(scope, spec)
    if value is _NOTHING or (value is None and spec.source is not ArgSource.LITERAL):
        if spec.has_default:
            return spec.default
        if spec.source in (ArgSource.OPTION, ArgSource.DEFAULT) or referenced_failed:
            return None
        raise ArgumentError(
            f"argument '{name}' of node '{scope.node.name}': "
            f"{spec.source.value} '{spec.ref}' is missing"
        )
    return value


def _raw_value(scope: Scope, spec: ArgSpec) -> tuple[Any, bool]:
    """(value or _NOTHING, True when an ``output`` reference names a failed node)."""
    match spec.source:
        case ArgSource.LITERAL:
            return spec.value, False
        case ArgSource.OPTION:
            return scope.option(spec.ref or ""), False
        case ArgSource.CONFIG:
            return scope.config_value(spec.ref or ""), False
        case ArgSource.STAT:
            return scope.stat(spec.ref or ""), False
        case ArgSource.OUTPUT:
            value, succeeded = scope.output(spec.ref or "")
            return value, not succeeded
    return _NOTHING, False


def resolve_ref(scope: Scope, kind: str, name: str) -> Any:
    """Value of a runIf reference (``output:X.k``, ``option:x``, ...), None when absent."""
    if kind == "output":
        value, _ = scope.output(name)
    elif kind == "option":
        value = scope.option(name)
    elif kind == "config":
        value = scope.config_value(name)
    elif kind == "stat":
        value = scope.stat(name)
    else:
        value = _NOTHING
    return None if value is _NOTHING else value


def file_flags(spec: ArgSpec, value: Any) -> dict[str, Any] | None:
    """What the worker must do with a typed argument before the job runs."""
    if spec.type is None:
        return None
    flags: dict[str, Any] = {"type": spec.type, **spec.flags}
    if spec.type == "tempdir":
        flags.setdefault("id", None)
        flags["base"] = value
    return flags
