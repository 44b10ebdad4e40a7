"""``Workflow`` and ``BaseWorkFlow``: Python functions run as a flow string says.

::

    from cryoflow import Workflow

    record = Workflow("a; b || c", a=fa, b=fb, c=fc).run()

    class MyFlow(BaseWorkFlow):
        def a(self): ...
        def b(self): ...
        def c(self): ...

    record = MyFlow().run("a; b || c")

``;`` runs one after the other, ``||`` (or ``|``) at the same time, and binds tighter
(docs/graph-format.md, "Flow strings"). Each function's return value is its node's result; a
parameter named after a dependency receives that dependency's result (``inputs``: all
of them, in order). Functions run in the worker pool unless ``run(inline=True)``; the
pool imports them by module and name, so lambdas and functions of ``__main__`` need
``inline=True``. Every run is stored: the flow's definition and one active record per
run in ``flow.db``, the pebble in ``state.db`` (``ccstatus --state DIR`` shows it).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryoflow.graph.flowgraph import flow_graph, nodes_graph, python_node
from cryoflow.graph.model import ENTRY, ArgSource, ArgSpec, Graph, frozen_map
from cryoflow.pyapi.calls import (
    CallableError,
    forget_inline,
    import_ref,
    register_inline,
    why_not_importable,
)
from cryoflow.pyapi.catalog import DEFAULT_ROOT, FlowCatalog, FlowDefinition
from cryoflow.pyapi.records import RunRecord
from cryoflow.pyapi.running import FlowRun, RunSpec


class Workflow:
    """A flow string and the functions its names refer to (see the module docstring)."""

    def __init__(self, flow: str, /, *, name: str | None = None,
                 state_dir: str | Path | None = None, **functions: Callable[..., Any]) -> None:
        self.flow = flow
        self.functions: dict[str, Callable[..., Any]] = dict(functions)
        self.name = name or default_name("flow", flow)
        self.state_dir = Path(state_dir) if state_dir is not None else DEFAULT_ROOT / self.name
        self.task_args: dict[str, Mapping[str, Any]] = {}
        """Node → ``{"args": [...], "kwargs": {...}}`` to call its function with."""

    def graph(self) -> Graph:
        """The checked graph of this flow (names without a function are an error)."""
        graph = flow_graph(self.flow, self.functions, name=self.name,
                           source=f"flow {self.name!r}")
        nodes = {n.name: _with_task_args(n, self.task_args.get(n.name)) for n in graph}
        return replace(graph, nodes=frozen_map(nodes))

    def run(self, inline: bool = False, state_dir: str | Path | None = None,
            workers: int | None = None, timeout_s: float | None = None) -> RunRecord:
        """Run the flow once and return its record (still ``running`` after ``timeout_s``)."""
        return start_flow(self.graph(), self.functions, inline=inline,
                          state_dir=Path(state_dir) if state_dir else self.state_dir,
                          workers=workers, text=self.flow).wait(timeout_s)

    @classmethod
    def from_yaml(cls, path: str | Path, *, state_dir: str | Path | None = None,
                  **functions: Callable[..., Any]) -> Workflow:
        """The flow a YAML file defines (``name:``, ``flow:``, optional ``tasks:``).

        Functions given here win over the file's ``tasks:`` references.
        """
        from cryoflow.pyapi.yamlflow import read_flow_file, task_functions

        definition = read_flow_file(Path(path))
        if definition.text is None:
            raise CallableError(f"{path}: the flow has no 'flow:' string")
        found = {**task_functions(definition, skip=functions), **functions}
        flow = cls(definition.text, name=definition.name, state_dir=state_dir, **found)
        flow.task_args = {name: task for name, task in definition.tasks.items()
                          if name not in functions and ("args" in task or "kwargs" in task)}
        return flow

    def definition(self) -> list[dict[str, Any]]:
        """The stored definition, as Cloudmesh's ``NAME-flow`` collection."""
        with FlowCatalog(self.state_dir) as catalog:
            return catalog.definition_objects()

    def active(self, run_id: int) -> list[dict[str, Any]]:
        """The active record of one run, as Cloudmesh's ``NAME-flow-active`` collection."""
        with FlowCatalog(self.state_dir) as catalog:
            return catalog.active_objects(run_id)


class BaseWorkFlow:
    """Subclass it: every public method is a node; ``MyFlow().run("a; b || c")``.

    In the worker pool each method runs on a fresh instance made without arguments;
    with ``inline=True`` the methods of this very instance are called.
    """

    def nodes(self) -> dict[str, Callable[..., Any]]:
        """The public methods of the subclass, by name."""
        own = set(dir(BaseWorkFlow))
        return {name: getattr(self, name) for name in dir(type(self))
                if not name.startswith("_") and name not in own
                and inspect.isfunction(getattr(type(self), name, None))}

    def workflow(self, flow: str, *, name: str | None = None,
                 state_dir: str | Path | None = None) -> Workflow:
        """This class's methods bound to ``flow``."""
        return Workflow(flow, name=name or default_name(type(self).__name__, flow),
                        state_dir=state_dir, **self.nodes())

    def run(self, flow: str, inline: bool = False, state_dir: str | Path | None = None,
            workers: int | None = None, timeout_s: float | None = None) -> RunRecord:
        """Run ``flow`` over this class's methods; see :meth:`Workflow.run`."""
        return self.workflow(flow).run(inline=inline, state_dir=state_dir, workers=workers,
                                       timeout_s=timeout_s)


def default_name(base: str, flow: str) -> str:
    """``base-<8 hex digits of the flow string>``: one state folder per distinct flow."""
    return f"{base}-{hashlib.sha1(flow.encode()).hexdigest()[:8]}"


def start_flow(graph: Graph, functions: Mapping[str, Callable[..., Any]], *, inline: bool,
               state_dir: Path, workers: int | None = None, text: str | None = None,
               serve: bool = False) -> FlowRun:
    """Store the definition and start one run of ``graph`` (its nodes call ``functions``)."""
    if inline:
        refs = {name: register_inline(function) for name, function in functions.items()}
        graph = with_refs(graph, refs)
        hooks = [lambda _record: forget_inline(list(refs.values()))]
    else:
        check_importable(graph, functions)
        hooks = []
    tasks = {name: import_ref(f) or "<inline>" for name, f in functions.items()}
    define(state_dir, graph, tasks, text)
    spec = RunSpec(graph=graph, state_dir=state_dir, inline=inline, workers=workers,
                   track=True, serve=serve)
    return FlowRun(spec, on_end=hooks).start()


def define(state_dir: Path, graph: Graph, tasks: Mapping[str, Any], text: str | None) -> None:
    """Store ``graph`` as the flow's definition in ``flow.db``."""
    nodes = {n.name: tuple(p for p in n.parents if p != ENTRY) for n in graph}
    with FlowCatalog(state_dir) as catalog:
        catalog.define(FlowDefinition(graph.name, nodes, tasks, text))


def check_importable(graph: Graph, functions: Mapping[str, Callable[..., Any]]) -> None:
    """Refuse functions a worker process cannot import, saying to use ``inline=True``."""
    for node in graph:
        function = functions.get(node.name)
        if function is not None and import_ref(function) is None:
            raise CallableError(why_not_importable(node.name, function))


def with_refs(graph: Graph, refs: Mapping[str, str]) -> Graph:
    """``graph`` whose python nodes call the given references instead."""
    nodes = {}
    for node in graph:
        ref = refs.get(node.name)
        if ref is not None and "callable" in node.args:
            args = {**node.args, "callable": ArgSpec(ArgSource.LITERAL, value=ref)}
            args.pop("path", None)
            node = replace(node, args=frozen_map(args))
        nodes[node.name] = node
    return replace(graph, nodes=frozen_map(nodes))


def definition_graph(definition: FlowDefinition) -> Graph:
    """The graph of a stored definition: every node must have a task reference."""
    missing = [n for n in definition.nodes if not _task_ref(definition.tasks.get(n))]
    if missing:
        raise CallableError(
            f"flow {definition.name!r}: no function is given for {', '.join(missing)}; add "
            "them under 'tasks:' as 'package.module:function' (or give 'module:')")
    nodes = [python_node(name, deps, _task_ref(definition.tasks[name]) or name,
                         extra={"callable": _task_ref(definition.tasks[name])},
                         path=_task_path(definition.tasks[name]))
             for name, deps in definition.nodes.items()]
    nodes = [_with_task_args(node, definition.tasks[node.name]) for node in nodes]
    return nodes_graph(nodes, name=definition.name, source=f"flow {definition.name!r}")


def _task_ref(task: Any) -> str | None:
    if isinstance(task, str) and ":" in task:
        return task
    if isinstance(task, Mapping) and isinstance(task.get("function"), str):
        return str(task["function"])
    return None


def _task_path(task: Any) -> str | None:
    return str(task["path"]) if isinstance(task, Mapping) and task.get("path") else None


def _with_task_args(node: Any, task: Any) -> Any:
    if not isinstance(task, Mapping):
        return node
    args = dict(node.args)
    for key in ("args", "kwargs"):
        if key in task:
            args[key] = ArgSpec(ArgSource.LITERAL, value=task[key])
    return replace(node, args=frozen_map(args))


__all__ = ["BaseWorkFlow", "Workflow"]
