"""``serviceURL``: fetch and check each service's definition when a run starts.

For every node with ``serviceURL`` the head asks the service what it accepts before any
pebble runs: ``GET <url>/schema`` (a cryoflow netwatcher: the JSON Schema of its posts)
or, failing that, ``GET <url>/stub`` (a CryoCloud microservice: a module source whose
``ccmodule`` literal is read with :mod:`ast`, never run). The node's arguments are
checked against it: a required property the node does not give, or an argument the
definition does not know, refuses the run with a sentence naming both. A service that
cannot be reached is only reported: its jobs fail (and are retried) until it answers.
"""

from __future__ import annotations

import ast
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryoflow.graph.model import Graph, Node

MAX_BYTES = 1 << 20
TIMEOUT_S = 5.0

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class ServiceCheck:
    errors: tuple[str, ...]
    """The run cannot start: the node's args do not fit the service."""
    warnings: tuple[str, ...]
    """The service could not be asked; its jobs may fail."""


def check_services(graph: Graph, fetch: Fetch | None = None) -> ServiceCheck:
    """Ask each ``serviceURL`` for its definition and check the node's args against it."""
    get = fetch or _fetch
    errors: list[str] = []
    warnings: list[str] = []
    for node in graph:
        if not node.service_url:
            continue
        base = node.service_url.rstrip("/")
        try:
            accepted = _definition(base, get)
        except OSError as exc:
            warnings.append(f"node '{node.name}': service {base} cannot be reached ({exc}); "
                            "its jobs fail until it answers")
            continue
        if accepted is None:
            warnings.append(f"node '{node.name}': service {base} serves neither /schema nor "
                            "/stub, so its arguments are not checked")
            continue
        errors += _mismatches(node, base, *accepted)
    return ServiceCheck(tuple(errors), tuple(warnings))


def _definition(base: str, get: Fetch) -> tuple[set[str] | None, set[str]] | None:
    """(known argument names or None for any, required names), or None if neither."""
    try:
        schema = json.loads(get(base + "/schema"))
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    except ValueError:
        schema = None
    else:
        if isinstance(schema, dict):
            return _from_schema(schema)
    try:
        source = get(base + "/stub").decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return _from_stub(source, base)


def _from_schema(schema: Mapping[str, Any]) -> tuple[set[str] | None, set[str]]:
    props = schema.get("properties")
    known = set(props) if isinstance(props, dict) and schema.get(
        "additionalProperties") is False else None
    required = schema.get("required")
    return known, set(required) if isinstance(required, list) else set()


def _from_stub(source: str, base: str) -> tuple[set[str] | None, set[str]]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise OSError(f"its /stub is not Python ({exc.msg})") from None
    for statement in tree.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and statement.targets[0].id == "ccmodule"):
            try:
                declared = ast.literal_eval(statement.value)
            except ValueError:
                break
            inputs = declared.get("inputs") if isinstance(declared, dict) else None
            return (set(inputs) if isinstance(inputs, dict) else None), set()
    raise OSError(f"the /stub of {base} has no literal ccmodule dict")


def _mismatches(node: Node, base: str, known: set[str] | None, required: set[str]
                ) -> list[str]:
    given = set(node.args)
    problems = []
    missing = sorted(required - given)
    if missing:
        problems.append(f"node '{node.name}': service {base} requires "
                        f"{', '.join(missing)}, which the node's args do not give")
    unknown = sorted(given - known) if known is not None else []
    if unknown:
        takes = ", ".join(sorted(known or ())) or "none"
        problems.append(f"node '{node.name}': service {base} does not take "
                        f"{', '.join(unknown)} (it takes {takes})")
    return problems


def _fetch(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise OSError(f"{url} is not an http(s) URL")
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:  # noqa: S310 - checked above
        return bytes(reply.read(MAX_BYTES))
