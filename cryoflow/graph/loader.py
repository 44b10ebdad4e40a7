"""Load a workflow graph from any of its notations into one checked :class:`Graph`.

Notations: a CryoCloud-style file or mapping ``{"workflow": {...}}`` (JSON or YAML;
the legacy shape with ``modules`` and root-level ``options`` too), a ColonyOS-style
list of function specs, and a flow string. Every problem in a source is collected and
raised together as one :class:`GraphValidationError`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryoflow.errors import GraphValidationError, ModuleLoadError
from cryoflow.graph import funcspec
from cryoflow.graph.flowgraph import flow_graph
from cryoflow.graph.model import Graph, Node, OptionSpec, frozen_map
from cryoflow.graph.modules import ModuleFinder, ModuleInfo
from cryoflow.graph.nodes import (
    NOT_DEFAULTABLE,
    BuildContext,
    Problems,
    RawNode,
    build_node,
    declares_outputs,
    flatten_nodes,
    merged_keys,
    with_work_folder,
)
from cryoflow.graph.options import build_option, canonical, option_problems
from cryoflow.graph.reading import plain_data, read_graph_file
from cryoflow.graph.schema import (
    SchemaChecker,
    SchemaProblem,
    allowed_keys,
    graph_checker,
    graph_schema,
    render_path,
    suggest,
)
from cryoflow.graph.validate import GraphFacts, validate

Source = str | os.PathLike[str] | Mapping[str, Any] | list[Any]
Warn = Callable[[str], None]

_FLOW_NAME = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*")
_log = logging.getLogger("cryoflow.graph")


def load_graph(
    source: Source,
    *,
    module_paths: Sequence[Path] = (),
    lenient: bool = False,
    warn: Warn | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> Graph:
    """Load, check and return the graph that ``source`` describes.

    ``source`` is a path (a string naming an existing file or ending in
    ``.json``/``.yaml``/``.yml``), a flow string (a string with ``;`` or ``|``, or a bare
    name when ``functions`` is given), a mapping with ``"workflow"`` or
    ``"functionspecs"``, or a list of function specs. ``module_paths`` are searched for
    modules after the graph file's folder and its ``modules/`` subfolder; ``lenient``
    turns unknown keys into warnings; ``warn`` receives warnings (default: the
    ``cryoflow.graph`` logger). Raises :class:`GraphValidationError` listing every
    problem found.
    """
    options = _LoadOptions(tuple(Path(p) for p in module_paths), lenient, warn or _log.warning)
    if isinstance(source, os.PathLike):
        return _load_file(Path(source), options)
    if isinstance(source, str):
        if _names_file(source):
            return _load_file(Path(source), options)
        if _is_flow(source, functions):
            return flow_graph(source, functions, warn=options.warn)
        raise GraphValidationError(
            [f"{source!r} is not a graph file that exists, nor a flow string such as 'a; b || c'"]
        )
    return load_data(source, source="<memory>", options=options)


@dataclass(frozen=True)
class _LoadOptions:
    module_paths: tuple[Path, ...]
    lenient: bool
    warn: Warn
    base_dir: Path | None = None


def _names_file(text: str) -> bool:
    try:
        if os.path.isfile(text):
            return True
    except (OSError, ValueError):
        return False
    return text.lower().endswith((".json", ".yaml", ".yml")) and not re.search(r"[;|]", text)


def _is_flow(text: str, functions: Mapping[str, Any] | None) -> bool:
    return bool(re.search(r"[;|]", text)) or (
        functions is not None and bool(_FLOW_NAME.fullmatch(text))
    )


# files


def _load_file(path: Path, options: _LoadOptions) -> Graph:
    source = str(path)
    data = read_graph_file(path)
    folder = path.resolve().parent
    placed = _LoadOptions(options.module_paths, options.lenient, options.warn, base_dir=folder)
    return load_data(data, source=source, options=placed, stem=path.stem)


# data


def load_data(data: Any, *, source: str, options: _LoadOptions, stem: str | None = None) -> Graph:
    """Dispatch parsed data to the loader of its notation."""
    data = plain_data(data, source)
    if isinstance(data, dict) and "workflow" in data:
        return _load_workflow(data, source, options)
    if isinstance(data, list) or (isinstance(data, dict) and "functionspecs" in data):
        return funcspec.funcspec_graph(
            data,
            source=source,
            name=stem or "functionspecs",
            lenient=options.lenient,
            warn=options.warn,
        )
    raise GraphValidationError([f"{source}: {_wrong_root(data)}"])


def _wrong_root(data: Any) -> str:
    wanted = 'the graph must be an object {"workflow": {...}} (or a list of function specs)'
    if isinstance(data, dict):
        keys = ", ".join(repr(k) for k in list(data)[:5]) or "no keys"
        hint = suggest(str(next(iter(data), "")), ["workflow", "functionspecs"]) if data else ""
        return f"{wanted}; found an object with {keys}{hint}"
    return f"{wanted}, not {type(data).__name__ if data is not None else 'an empty document'}"


def _load_workflow(data: dict[str, Any], source: str, options: _LoadOptions) -> Graph:
    problems = Problems(source)
    data = _legacy(data, problems)
    _check_schema(data, problems, options.lenient)
    problems.raise_errors(options.warn)
    workflow: dict[str, Any] = data["workflow"]
    specs = _options(workflow.get("options") or {}, problems)
    finder = ModuleFinder(_search_path(options))
    raws = flatten_nodes(workflow.get("nodes") or [], ("workflow", "nodes"))
    nodes, infos, known = _build_nodes(raws, finder, specs, problems)
    facts = GraphFacts(
        nodes=nodes,
        labels={r.name: r.label for r in raws},
        infos=infos,
        outputs_known=known,
        options=specs,
        has_config=bool(workflow.get("config")),
    )
    order = validate(facts, problems)
    problems.raise_errors(options.warn)
    return Graph(
        name=workflow["name"],
        nodes=frozen_map({n.name: n for n in order}),
        description=workflow.get("description", ""),
        options=frozen_map(specs),
        config=frozen_map(workflow.get("config") or {}),
        source=source,
    )


def _search_path(options: _LoadOptions) -> list[Path]:
    first = [options.base_dir, options.base_dir / "modules"] if options.base_dir else []
    return [*first, *options.module_paths]


def _legacy(data: dict[str, Any], problems: Problems) -> dict[str, Any]:
    workflow = data.get("workflow")
    if not isinstance(workflow, dict):
        return data
    workflow = dict(workflow)
    if "options" in data:
        problems.warning("", "legacy format: move the root-level 'options' into 'workflow'")
        if "options" in workflow:
            problems.error("", "'options' is given both at the root and in 'workflow'; keep one")
        workflow.setdefault("options", data["options"])
    if "modules" in workflow:
        problems.warning("", "legacy format: rename 'modules' to 'nodes'")
        if "nodes" in workflow:
            problems.error("", "the workflow has both 'modules' and 'nodes'; keep 'nodes'")
        workflow.setdefault("nodes", workflow["modules"])
        del workflow["modules"]
    if isinstance(workflow.get("nodes"), list):
        workflow["nodes"] = _legacy_nodes(workflow["nodes"], problems)
    rest = {k: v for k, v in data.items() if k not in ("options", "workflow")}
    return {**rest, "workflow": workflow}


def _legacy_nodes(nodes: list[Any], problems: Problems) -> list[Any]:
    """Early CryoCloud files gave nodes ``options``: more args (``args`` win)."""
    out = []
    for node in nodes:
        if isinstance(node, dict) and isinstance(node.get("children"), list):
            node = {**node, "children": _legacy_nodes(node["children"], problems)}
        if isinstance(node, dict) and isinstance(node.get("options"), dict):
            label = node.get("name") or node.get("module") or "a node"
            problems.warning("", f"node {label!r}: legacy format: move the node's 'options' "
                                 "into 'args'")
            given = node.get("args")
            args: dict[str, Any] = given if isinstance(given, dict) else {}
            node = {k: v for k, v in node.items() if k != "options"} | {
                "args": {**node["options"], **args}}
        out.append(node)
    return out


def _check_schema(data: dict[str, Any], problems: Problems, lenient: bool) -> None:
    for problem in graph_checker().problems(data):
        where, text = _describe(problem, data)
        if problem.unknown_key is not None:
            problems.report(where, text, soft=lenient)
        else:
            problems.error(where, text)


def _describe(problem: SchemaProblem, data: Any) -> tuple[str, str]:
    """Where a schema problem is (a node, an option, a path) and what it says."""
    where, rest = _locate(problem.path, data)
    message = problem.message
    if problem.unknown_key is not None:
        known = allowed_keys(problem.path)
        hint = suggest(problem.unknown_key, known)
        if not hint and "output" in known and "default" in known:
            hint = ' (write a literal object value as {"default": {...}})'
        message += hint
    if rest:
        message = f"key {'.'.join(str(p) for p in rest)!r}: {message}"
        if problem.unknown_key is None:
            message += f" (at {render_path(problem.path)})"
    return where, message


def _locate(path: tuple[str | int, ...], data: Any) -> tuple[str, tuple[str | int, ...]]:
    if path[:2] == ("workflow", "options") and len(path) > 2:
        return f"option {path[2]!r}", path[3:]
    if path[:2] != ("workflow", "nodes") or len(path) < 3:
        return (render_path(path) if path else ""), ()
    node_at, item = 2, data["workflow"]["nodes"][path[2]]
    i = 3
    while i + 1 < len(path) and path[i] == "children" and isinstance(item, dict):
        item = item["children"][path[i + 1]]
        node_at, i = i + 1, i + 2
    name = item.get("name") if isinstance(item, dict) else None
    label = (
        f"node {name!r}"
        if isinstance(name, str)
        else f"the node at {render_path(path[: node_at + 1])}"
    )
    return label, path[node_at + 1 :]


def _options(raw: Mapping[str, Any], problems: Problems) -> dict[str, OptionSpec]:
    specs: dict[str, OptionSpec] = {}
    for name, value in raw.items():
        spec, found = build_option(name, value)
        specs[name] = spec
        for text in found:
            problems.error("", text)
    for text in option_problems(specs):
        problems.error("", text)
    return specs


def _build_nodes(
    raws: list[RawNode],
    finder: ModuleFinder,
    specs: Mapping[str, OptionSpec],
    problems: Problems,
) -> tuple[list[Node], dict[str, ModuleInfo], frozenset[str]]:
    ctx = BuildContext(problems, {canonical(n): n for n in specs}, canonical)
    defaults = _Defaults(problems)
    nodes: list[Node] = []
    infos: dict[str, ModuleInfo] = {}
    known: set[str] = set()
    failed: set[str] = set()
    for raw in raws:
        info = _find_module(raw, finder, problems, failed)
        keys = with_work_folder(merged_keys(raw.raw, defaults.of(info)), info, raw.name)
        nodes.append(build_node(raw, keys, info, ctx))
        if info is not None:
            infos[raw.name] = info
        if declares_outputs(keys, info):
            known.add(raw.name)
    return nodes, infos, frozenset(known)


def _find_module(
    raw: RawNode, finder: ModuleFinder, problems: Problems, failed: set[str]
) -> ModuleInfo | None:
    """The node's module; a module that cannot be loaded is explained once."""
    name = raw.raw.get("module")
    if "serviceURL" in raw.raw:
        return None
    if name is None:
        problems.error(raw.label, "it has no 'module'; name the module the node runs")
        return None
    try:
        return finder.find(name)
    except ModuleLoadError as e:
        problems.error(
            raw.label, f"module {name!r} cannot be used (see above)" if name in failed else str(e)
        )
        failed.add(name)
        return None


@lru_cache(maxsize=1)
def _node_checker() -> SchemaChecker:
    return SchemaChecker({"$ref": "#/$defs/node", "$defs": graph_schema()["$defs"]})


class _Defaults:
    """Each module's ``defaults``, checked against the node schema once per module."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.checker = _node_checker()
        self.known = allowed_keys(("workflow", "nodes", 0)) - NOT_DEFAULTABLE
        self.cache: dict[str, Mapping[str, Any]] = {}

    def of(self, info: ModuleInfo | None) -> Mapping[str, Any]:
        if info is None:
            return {}
        if info.ref not in self.cache:
            self.cache[info.ref] = self._checked(info)
        return self.cache[info.ref]

    def _checked(self, info: ModuleInfo) -> Mapping[str, Any]:
        good: dict[str, Any] = {}
        for key, value in info.defaults.items():
            if key not in self.known:
                continue
            found = self.checker.problems({key: value})
            for problem in found:
                self.problems.warning(
                    f"module {info.name!r} ({info.ref})",
                    f"default {key!r} ignored: {problem.message}",
                )
            if not found:
                good[key] = value
        return good
