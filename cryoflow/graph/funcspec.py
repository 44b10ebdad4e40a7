"""ColonyOS-style function-spec workflows → a :class:`Graph`.

A workflow is a list of specs (bare, or under ``{"functionspecs": [...]}``)::

    {"nodename": "sum_node", "funcname": "sum", "kwargs": {"n": 3},
     "priority": 10, "maxexectime": 60, "maxretries": 2,
     "conditions": {"executortype": "py-executor", "dependencies": ["gen_node"]}}

Each spec is a node running the ``funcspec`` placeholder module; ``funcname``,
``args``, ``kwargs`` and ``executortype`` (and ``env``, ``label``, ``maxwaittime``
when given) are kept in :attr:`Node.extra` for the executor that takes the job.
``maxexectime`` becomes ``timeout`` and ``maxretries`` ``retries`` (values <= 0 mean
none). Specs without dependencies start the run; they are not input nodes. A process
starts only when all its dependencies succeeded. Its arguments carry its parents'
results in the order of its ``dependencies`` (the process's input); a spec without an
``executortype`` runs ``funcname`` (``package.module:function``) with the built-in
``python`` module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from cryoflow.graph.flowgraph import python_args, python_module_ref
from cryoflow.graph.model import ENTRY, Graph, Node, RunOn, frozen_map
from cryoflow.graph.nodes import Problems, name_problem, strings
from cryoflow.graph.schema import SchemaChecker, render_path, suggest
from cryoflow.graph.validate import GraphFacts, validate

FUNCSPEC_MODULE = "funcspec"
"""The placeholder module of nodes defined by function specs."""

_STRINGS = {"type": "array", "items": {"type": "string"}}
FUNCSPEC_SCHEMA: Mapping[str, Any] = {
    "$defs": {
        "spec": {
            "type": "object",
            "required": ["nodename", "funcname"],
            "properties": {
                "nodename": {"type": "string", "minLength": 1},
                "funcname": {"type": "string", "minLength": 1},
                "args": {"type": "array"},
                "kwargs": {"type": "object"},
                "priority": {"type": "integer"},
                "maxwaittime": {"type": "number"},
                "maxexectime": {"type": "number"},
                "maxretries": {"type": "integer"},
                "label": {"type": "string"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "fs": {"type": "object"},
                "conditions": {"$ref": "#/$defs/conditions"},
            },
            "additionalProperties": False,
        },
        "conditions": {
            "type": "object",
            "properties": {
                "colonyname": {"type": "string"},
                "executortype": {"type": "string"},
                "executornames": _STRINGS,
                "dependencies": _STRINGS,
                "nodes": {"type": "integer"},
                "cpu": {"type": "string"},
                "processes": {"type": "integer"},
                "processespernode": {"type": "integer"},
                "mem": {"type": "string"},
                "walltime": {"type": "integer"},
                "gpu": {"type": "object"},
            },
            "additionalProperties": False,
        },
    },
    "type": "object",
    "required": ["functionspecs"],
    "properties": {
        "$schema": {"type": "string"},
        "name": {"type": "string", "minLength": 1},
        "colonyname": {"type": "string"},
        "functionspecs": {"type": "array", "items": {"$ref": "#/$defs/spec"}},
    },
    "additionalProperties": False,
}

_KEPT = ("env", "label", "maxwaittime")


def funcspec_graph(
    data: list[Any] | Mapping[str, Any],
    *,
    source: str = "<memory>",
    name: str = "functionspecs",
    lenient: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Graph:
    """Check and compile a function-spec workflow (plain JSON data) into a graph."""
    wrapped: Mapping[str, Any] = {"functionspecs": data} if isinstance(data, list) else data
    problems = Problems(source)
    _check(wrapped, problems, lenient)
    problems.raise_errors(warn or (lambda line: None))
    specs = wrapped["functionspecs"]
    nodes = [spec_node(spec, problems) for spec in specs]
    facts = GraphFacts(
        nodes=nodes,
        labels={n.name: f"function spec {n.name!r}" for n in nodes},
        infos={},
        outputs_known=frozenset(),
        input_modules=False,
        parents_key="conditions.dependencies",
    )
    order = validate(facts, problems)
    problems.raise_errors(warn or (lambda line: None))
    return Graph(
        name=wrapped.get("name", name),
        nodes=frozen_map({n.name: n for n in order}),
        source=source,
    )


def _check(wrapped: Mapping[str, Any], problems: Problems, lenient: bool) -> None:
    for problem in _checker().problems(wrapped):
        path = problem.path
        where = _where(path, wrapped)
        text = problem.message
        if problem.unknown_key is not None:
            text += suggest(problem.unknown_key, _known(path))
            problems.report(where, text, soft=lenient)
        else:
            rest = path[2:] if path[:1] == ("functionspecs",) and len(path) > 2 else ()
            problems.error(where, f"key {'.'.join(map(str, rest))!r}: {text}" if rest else text)


def spec_problems(spec: Any) -> list[str]:
    """Why one function spec is not valid (an empty list when it is)."""
    problems = Problems("function spec")
    _check({"functionspecs": [spec]}, problems, lenient=False)
    return problems.errors


@lru_cache(maxsize=1)
def _checker() -> SchemaChecker:
    return SchemaChecker(FUNCSPEC_SCHEMA)


def _where(path: tuple[str | int, ...], wrapped: Mapping[str, Any]) -> str:
    if path[:1] != ("functionspecs",) or len(path) < 2:
        return render_path(path) if path else ""
    spec = wrapped["functionspecs"][path[1]]
    nodename = spec.get("nodename") if isinstance(spec, Mapping) else None
    if isinstance(nodename, str):
        return f"function spec {nodename!r}"
    return f"function spec #{int(path[1]) + 1}"


def _known(path: tuple[str | int, ...]) -> list[str]:
    defs = FUNCSPEC_SCHEMA["$defs"]
    if "conditions" in path:
        return list(defs["conditions"]["properties"])
    if len(path) >= 2:
        return list(defs["spec"]["properties"])
    return list(FUNCSPEC_SCHEMA["properties"])


def spec_node(spec: Mapping[str, Any], problems: Problems | None = None) -> Node:
    """The node of one (already checked) function spec."""
    name = spec["nodename"]
    problems = Problems("<spec>") if problems is None else problems
    problem = name_problem(name)
    if problem:
        problems.error(f"function spec {name!r}", problem)
    conditions = spec.get("conditions") or {}
    extra = {
        "funcname": spec["funcname"],
        "args": list(spec.get("args") or []),
        "kwargs": dict(spec.get("kwargs") or {}),
        "executortype": conditions.get("executortype"),
    }
    extra.update({k: spec[k] for k in _KEPT if k in spec})
    exec_s = spec.get("maxexectime")
    retries = spec.get("maxretries")
    parents = strings(conditions.get("dependencies")) or (ENTRY,)
    return Node(
        name=name,
        module=FUNCSPEC_MODULE,
        module_ref=python_module_ref(),
        parents=parents,
        args=python_args(extra["funcname"], parents, args=extra["args"], kwargs=extra["kwargs"]),
        run_on=RunOn.SUCCESS,
        priority=int(spec.get("priority", 50)),
        timeout_s=float(exec_s) if exec_s is not None and exec_s > 0 else None,
        retries=int(retries) if retries is not None and retries > 0 else 0,
        extra=frozen_map(extra),
    )
