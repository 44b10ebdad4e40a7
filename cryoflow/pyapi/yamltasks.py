"""Cloudmesh's YAML task shape: ``tasks: task: {name, parameter, calculation, entry, return}``.

::

    name: shapes                 # optional: the file's name without .yaml
    module: steps                # where the calculations' functions are
    flow: a; b                   # optional: the tasks one after the other
    parameters: {x: 3, y: 4}     # optional: values of the tasks' parameters
    tasks:
        task:
          name: a
          parameter: {x: "int", y: "int"}
          calculation: f(x,y)
          entry: {color: green, label: a, value: x, shape: circle}
          return: {color: green, label: a, value: x, shape: circle}
        task:
          name: b
          parameter: {a: "any"}
          calculation: steps.g(a)

Each ``task:`` (the key may repeat; a list of them works too) is a node. A parameter
takes its value from the task of the same name that ran before (that task's ``value``)
or else from ``parameters:``, and is converted to its type (``int``, ``float``,
``str``, ``bool``, ``list``, ``dict``, or ``any``). ``calculation`` is a call of a
function (``f`` from ``module:``, or ``package.module.f``) whose arguments are
parameter names or literals; it is read, never evaluated. The task returns the
``return`` style (``status: done``) with ``value`` set: the parameter it names, the
calculation's result for ``result`` or when no value is given, or the literal given.
The ``entry`` style is published as the node's status value ``entry`` when it starts.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cryoflow.errors import GraphError

CALL_TASK = "cryoflow.pyapi.yamltasks:call_task"
TASK_KEYS = ("name", "parameter", "calculation", "entry", "return")
STYLE_KEYS = ("color", "label", "value", "shape", "status")
TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool, "list": list,
                         "dict": dict, "any": None, "": None}


class _Loader(yaml.SafeLoader):
    """Safe YAML in which a repeated ``task:`` key keeps every value (as a list)."""


class Repeated(list[Any]):
    """The values of a ``task:`` key that appears more than once in one mapping."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    tasks: list[Any] = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        value = loader.construct_object(value_node, deep=True)
        if key == "task":
            tasks.append(value)
        else:
            result[key] = value
    if tasks:
        result["task"] = Repeated(tasks) if len(tasks) > 1 else tasks[0]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def seed_tasks(data: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The ``task:`` entries when ``tasks:`` has Cloudmesh's shape, else None."""
    given = data.get("tasks")
    if isinstance(given, Mapping) and set(given) == {"task"}:
        found = given["task"]
        items = list(found) if isinstance(found, list) else [found]
    elif isinstance(given, list) and given and all(
            isinstance(t, Mapping) and set(t) == {"task"} for t in given):
        items = [t["task"] for t in given]
    else:
        return None
    return items if all(isinstance(t, Mapping) and "name" in t for t in items) else None


def convert(data: Mapping[str, Any], items: list[Mapping[str, Any]], path: Path,
            ) -> dict[str, Any]:
    """The file in cryoflow's own shape: ``name``, ``flow``, ``tasks`` of the wrapper."""
    names = [str(t["name"]) for t in items]
    if len(set(names)) != len(names):
        raise GraphError(f"{path}: tasks: two tasks have the same name")
    module = data.get("module")
    values = data.get("parameters") or {}
    if not isinstance(values, Mapping):
        raise GraphError(f"{path}: 'parameters:' maps parameter names to values")
    tasks = {name: {"function": CALL_TASK, "path": None,
                    "kwargs": {"spec": _spec(item, module, values, names, f"{path}: {name}")}}
             for name, item in zip(names, items)}
    return {"name": data.get("name") or path.stem.replace(".", "-"),
            "flow": data.get("flow") or "; ".join(names), "tasks": tasks,
            **{k: data[k] for k in ("path", "description") if k in data}}


def _spec(item: Mapping[str, Any], module: Any, values: Mapping[str, Any],
          names: list[str], where: str) -> dict[str, Any]:
    unknown = sorted(set(item) - set(TASK_KEYS))
    if unknown:
        raise GraphError(f"{where}: unknown key {unknown[0]!r}; a task has "
                         f"{', '.join(TASK_KEYS)}")
    params = {str(k).rstrip(":"): str(v or "") for k, v in (item.get("parameter") or {}).items()}
    for param, kind in params.items():
        if kind not in TYPES:
            raise GraphError(f"{where}: parameter {param}: type {kind!r} is not one of "
                             f"{', '.join(t for t in TYPES if t)}")
        if param not in names and param not in values:
            raise GraphError(f"{where}: parameter {param} has no value; give it under "
                             "'parameters:' or name a task after it")
    spec: dict[str, Any] = {"parameters": params,
                            "values": {p: values[p] for p in params if p in values},
                            "entry": _style(item.get("entry"), f"{where}: entry"),
                            "return": _style(item.get("return"), f"{where}: return")}
    if item.get("calculation") is not None:
        spec["calculation"] = parse_calculation(str(item["calculation"]), module, params, where)
    return spec


def _style(style: Any, where: str) -> dict[str, Any]:
    if style is None:
        return {}
    if not isinstance(style, Mapping):
        raise GraphError(f"{where}: give a mapping of {', '.join(STYLE_KEYS)}")
    unknown = sorted(set(style) - set(STYLE_KEYS))
    if unknown:
        raise GraphError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(STYLE_KEYS)}")
    return dict(style)


def parse_calculation(text: str, module: Any, params: Mapping[str, str],
                      where: str) -> dict[str, Any]:
    """``f(x, 2, k=y)`` → the function's reference and its arguments (never evaluated)."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        call = None
    if not isinstance(call, ast.Call):
        raise GraphError(f"{where}: calculation {text!r} must be a call such as f(x, y)")
    dotted = _dotted(call.func)
    if dotted is None:
        raise GraphError(f"{where}: calculation {text!r}: call a function by its name")
    head, _, last = dotted.rpartition(".")
    if head:
        function = f"{head}:{last}"
    elif isinstance(module, str) and module:
        function = f"{module}:{last}"
    else:
        raise GraphError(f"{where}: calculation {text!r}: say in 'module:' where {last} is, "
                         "or write package.module.function")
    args = [_argument(a, params, text, where) for a in call.args]
    kwargs = {k.arg: _argument(k.value, params, text, where) for k in call.keywords if k.arg}
    return {"function": function, "args": args, "kwargs": kwargs}


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _argument(node: ast.expr, params: Mapping[str, str], text: str, where: str) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in params:
            raise GraphError(f"{where}: calculation {text!r}: {node.id} is not a parameter "
                             f"(parameters: {', '.join(params) or 'none'})")
        return {"parameter": node.id}
    try:
        return {"literal": ast.literal_eval(node)}
    except ValueError:
        raise GraphError(f"{where}: calculation {text!r}: arguments are parameter names or "
                         "literals") from None


# ----------------------------------------------------------------------------- running


def call_task(spec: Mapping[str, Any], inputs: list[Any], worker: Any = None) -> dict[str, Any]:
    """Run one task of the shape (see the module docstring); its styled result.

    ``spec["after"]`` names the tasks whose results ``inputs`` holds, in order.
    """
    from cryoflow.pyapi.calls import resolve

    if worker is not None and spec.get("entry"):
        worker.status["entry"] = dict(spec["entry"])
    given = {name: _value_of(result) for name, result in zip(spec.get("after", ()), inputs)}
    values = {name: _typed(name, kind, given[name] if name in given else spec["values"][name])
              for name, kind in spec["parameters"].items()}
    result = None
    calculation = spec.get("calculation")
    if calculation is not None:
        function = resolve(calculation["function"], spec.get("path"))
        args = [_resolved(a, values) for a in calculation["args"]]
        kwargs = {k: _resolved(a, values) for k, a in calculation["kwargs"].items()}
        result = function(*args, **kwargs)
    style = {"status": "done", **spec.get("return", {})}
    wanted = style.get("value", "result")
    if isinstance(wanted, str) and wanted in values:
        style["value"] = values[wanted]
    elif wanted == "result":
        style["value"] = result
    return style


def _value_of(result: Any) -> Any:
    return result["value"] if isinstance(result, Mapping) and "value" in result else result


def _resolved(argument: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
    return values[argument["parameter"]] if "parameter" in argument else argument["literal"]


def _typed(name: str, kind: str, value: Any) -> Any:
    convert_to = TYPES[kind]
    if convert_to is None or isinstance(value, convert_to):
        return value
    if convert_to is bool and isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    try:
        return convert_to(value)
    except (TypeError, ValueError):
        raise TypeError(f"parameter {name}: {value!r} is not a {kind}") from None
