"""Flow strings (``"a; b || c"``) and the Python callables they name → a :class:`Graph`.

Every name becomes a node running the built-in ``python`` module
(``cryoflow/builtin_modules/python.py``), with ``extra["callable"]`` naming the
function: its dotted import name when it has one, else the name it was registered under. Its literal
arguments tell the module what to call and pass it the parents' results
(:func:`python_args`); a node runs only when all its parents succeeded. The parsed
grouping is kept in
:attr:`Graph.flow` for ``ccworkflow --explain``. A flow has no input modules: its
first steps are direct children of ``entry`` but not input nodes; a run starts with
one pebble given by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryoflow.errors import GraphError, GraphValidationError
from cryoflow.graph.callables import import_path, import_ref
from cryoflow.graph.flow import FlowPlan, parse_flow
from cryoflow.graph.model import (
    ENTRY,
    ArgSource,
    ArgSpec,
    Graph,
    Node,
    RunOn,
    frozen_map,
)
from cryoflow.graph.modules import builtin_modules_dir
from cryoflow.graph.nodes import Problems, name_problem
from cryoflow.graph.schema import suggest
from cryoflow.graph.validate import GraphFacts, validate

PYTHON_MODULE = "python"
"""The placeholder module of nodes that call a Python function."""


def callable_ref(name: str, function: Callable[..., Any]) -> str:
    """A dotted import name for a module-level function, else the registered ``name``."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return name
    return f"{module}.{qualname}"


def python_module_ref() -> str:
    """The file of the built-in ``python`` module."""
    return str(builtin_modules_dir() / f"{PYTHON_MODULE}.py")


def python_args(
    ref: str, parents: tuple[str, ...], path: str | None = None, **literals: Any
) -> Mapping[str, ArgSpec]:
    """The arguments of a node that calls ``ref`` with its parents' results."""
    real = tuple(p for p in parents if p != ENTRY)
    args: dict[str, ArgSpec] = {
        "callable": ArgSpec(ArgSource.LITERAL, value=ref),
        "parents": ArgSpec(ArgSource.LITERAL, value=list(real)),
    }
    if path:
        args["path"] = ArgSpec(ArgSource.LITERAL, value=path)
    for parent in real:
        args[f"input:{parent}"] = ArgSpec(
            ArgSource.OUTPUT, ref=f"{parent}.result", has_default=True, default=None)
    for name, value in literals.items():
        args[name] = ArgSpec(ArgSource.LITERAL, value=value)
    return frozen_map(args)


def python_node(name: str, parents: tuple[str, ...], ref: str, *, path: str | None = None,
                extra: Mapping[str, Any] | None = None) -> Node:
    """A node that runs the built-in ``python`` module on ``ref`` once its parents succeed."""
    parents = parents or (ENTRY,)
    return Node(
        name=name,
        module=PYTHON_MODULE,
        module_ref=python_module_ref(),
        parents=parents,
        args=python_args(ref, parents, path),
        run_on=RunOn.SUCCESS,
        extra=frozen_map(extra or {"callable": ref}),
    )


def flow_graph(
    text: str,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    *,
    name: str = "flow",
    source: str = "<flow>",
    warn: Callable[[str], None] | None = None,
) -> Graph:
    """Compile a flow string into a graph; with ``functions``, every name must be one."""
    try:
        plan = parse_flow(text)
    except GraphError as e:
        raise GraphValidationError([f"{source}: {e}"]) from None
    problems = Problems(source)
    nodes = [_node(step, plan, functions, problems) for step in plan.names]
    facts = GraphFacts(
        nodes=nodes,
        labels={n.name: f"step {n.name!r}" for n in nodes},
        infos={},
        outputs_known=frozenset(),
        input_modules=False,
    )
    order = validate(facts, problems)
    problems.raise_errors(warn or (lambda line: None))
    return Graph(
        name=name,
        nodes=frozen_map({n.name: n for n in order}),
        source=source,
        flow=plan.grouping,
    )


def _node(
    step: str,
    plan: FlowPlan,
    functions: Mapping[str, Callable[..., Any]] | None,
    problems: Problems,
) -> Node:
    where = f"step {step!r} (column {plan.columns.get(step, '?')})"
    problem = name_problem(step)
    if problem:
        problems.error(where, problem)
    ref, call, path = step, step, None
    if functions is not None:
        if step not in functions:
            known = ", ".join(sorted(functions)) or "none"
            problems.error(
                where,
                f"no function is given for it (functions: {known}){suggest(step, list(functions))}",
            )
        elif not callable(functions[step]):
            problems.error(where, f"{functions[step]!r} is not callable")
        else:
            ref = callable_ref(step, functions[step])
            call = import_ref(functions[step]) or step
            path = import_path(functions[step])
    return python_node(step, plan.deps.get(step) or (ENTRY,), call, path=path,
                       extra={"callable": ref})


def nodes_graph(
    nodes: list[Node],
    *,
    name: str,
    source: str = "<flow>",
    parents_key: str = "dependencies",
) -> Graph:
    """Check ``nodes`` (unique names, known parents, no cycle) and build their graph."""
    problems = Problems(source)
    for node in nodes:
        problem = name_problem(node.name)
        if problem:
            problems.error(f"node {node.name!r}", problem)
    facts = GraphFacts(
        nodes=nodes,
        labels={n.name: f"node {n.name!r}" for n in nodes},
        infos={},
        outputs_known=frozenset(),
        input_modules=False,
        parents_key=parents_key,
    )
    order = validate(facts, problems)
    problems.raise_errors(lambda line: None)
    return Graph(name=name, nodes=frozen_map({n.name: n for n in order}), source=source)
