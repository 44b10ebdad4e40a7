"""Flow strings (``"a; b || c"``) and the Python callables they name → a :class:`Graph`.

Every name becomes a node running the built-in ``python`` placeholder module, with
``extra["callable"]`` naming the function: its dotted import name when it has one,
else the name it was registered under. The parsed grouping is kept in
:attr:`Graph.flow` for ``ccworkflow --explain``. A flow has no input modules: its
first steps are direct children of ``entry`` but not input nodes; a run starts with
one pebble given by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryoflow.errors import GraphError, GraphValidationError
from cryoflow.graph.flow import FlowPlan, parse_flow
from cryoflow.graph.model import ENTRY, Graph, Node, frozen_map
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
    ref = step
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
    return Node(
        name=step,
        module=PYTHON_MODULE,
        parents=plan.deps.get(step) or (ENTRY,),
        extra=frozen_map({"callable": ref}),
    )
