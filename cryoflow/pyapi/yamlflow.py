"""Flows in YAML files, as Cloudmesh flow defines them::

    name: demo
    flow: a; b || c
    module: mypkg.steps          # optional: names without a task are functions here
    tasks:                       # optional
      a: mypkg.steps:fetch
      b: {function: mypkg.steps:clean, kwargs: {level: 2}}

``tasks`` maps a node name to ``package.module:function`` or to a mapping with
``function`` and optional ``args``/``kwargs``. Modules are imported from the YAML
file's folder (or the ``path:`` given), so a ``steps.py`` beside the file is found as
``steps:fetch``.

Cloudmesh's task shape (``tasks: task: {name, parameter, calculation, entry,
return}``, ``task:`` repeated for each task) is read too: see
:mod:`cryoflow.pyapi.yamltasks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cryoflow.errors import GraphError
from cryoflow.graph.flow import parse_flow
from cryoflow.graph.nodes import name_problem
from cryoflow.pyapi import yamltasks
from cryoflow.pyapi.calls import resolve
from cryoflow.pyapi.catalog import FlowDefinition

KEYS = ("name", "flow", "tasks", "module", "path", "description")


def read_flow_file(path: Path) -> FlowDefinition:
    """Read and check a YAML flow file; :class:`GraphError` names what is wrong."""
    try:
        data = yamltasks.load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GraphError(f"{path}: cannot read the flow file: {exc}") from exc
    if not isinstance(data, Mapping):
        raise GraphError(f"{path}: a flow file is a mapping with 'name:' and 'flow:'")
    items = yamltasks.seed_tasks(data)
    if items is not None:
        data = yamltasks.convert(data, items, path)
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise GraphError(f"{path}: unknown key {unknown[0]!r}; a flow file has {', '.join(KEYS)}")
    name = _text(data, "name", path)
    problem = name_problem(name)
    if problem:
        raise GraphError(f"{path}: name: {problem}")
    try:
        plan = parse_flow(_text(data, "flow", path))
    except GraphError as exc:
        raise GraphError(f"{path}: flow: {exc}") from None
    folder = str((path.parent / str(data.get("path") or ".")).resolve())
    if items is not None:
        for node, task in data["tasks"].items():
            task["kwargs"]["spec"].update(after=list(plan.deps[node]), path=folder)
    tasks = _tasks(data, plan.names, folder, path)
    return FlowDefinition(name=name, nodes=dict(plan.deps), tasks=tasks, text=data["flow"])


def _text(data: Mapping[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise GraphError(f"{path}: '{key}:' must be a non-empty string")
    return value.strip()


def _tasks(data: Mapping[str, Any], names: tuple[str, ...], folder: str,
           path: Path) -> dict[str, Any]:
    given = data.get("tasks") or {}
    if not isinstance(given, Mapping):
        raise GraphError(f"{path}: 'tasks:' maps node names to 'package.module:function'")
    extra = sorted(set(given) - set(names))
    if extra:
        raise GraphError(f"{path}: tasks: {extra[0]!r} is not a name in the flow")
    module = data.get("module")
    tasks: dict[str, Any] = {}
    for name in names:
        task = given.get(name) or (f"{module}:{name}" if module else None)
        if task is not None:
            tasks[name] = _task(task, folder, f"{path}: tasks: {name}")
    return tasks


def _task(task: Any, folder: str, where: str) -> dict[str, Any]:
    if isinstance(task, str):
        task = {"function": task}
    if not isinstance(task, Mapping) or not isinstance(task.get("function"), str) \
            or ":" not in task["function"]:
        raise GraphError(f"{where}: give 'package.module:function' or a mapping with "
                         "'function', 'args' and 'kwargs'")
    unknown = sorted(set(task) - {"function", "args", "kwargs", "path"})
    if unknown:
        raise GraphError(f"{where}: unknown key {unknown[0]!r}")
    return {"path": folder, **task}


def task_functions(definition: FlowDefinition,
                   skip: Mapping[str, Any] | None = None) -> dict[str, Callable[..., Any]]:
    """Import the functions the definition's tasks name (except those in ``skip``)."""
    found: dict[str, Callable[..., Any]] = {}
    for name, task in definition.tasks.items():
        if name not in (skip or {}):
            found[name] = resolve(task["function"], task.get("path"))
    return found
