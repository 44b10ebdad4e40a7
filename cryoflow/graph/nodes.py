"""Turn the node objects of a checked CryoCloud-style file into :class:`Node` records.

The input has passed the JSON Schema, so every key has the right JSON type; this
module flattens inline ``children``, names unnamed nodes, merges module defaults under
the node's own keys and reads args, ``post``, ``cache``, ``runIf`` and
``restrictions``. Problems that the schema cannot see (two sources in one arg, a
``stat`` outside the list, a ``runIf`` that does not parse) go to a :class:`Problems`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryoflow.errors import ExprError, GraphValidationError
from cryoflow.graph.expr import Expr, Restriction, parse_expr, parse_restriction
from cryoflow.graph.model import (
    EMPTY,
    ENTRY,
    STAT_NAMES,
    ArgSource,
    ArgSpec,
    CacheSpec,
    Node,
    PostSpec,
    RunOn,
    WorkerClass,
    empty_map,
    frozen_map,
)
from cryoflow.graph.modules import ModuleInfo
from cryoflow.graph.schema import Path_, suggest

SOURCES = ("option", "config", "output", "stat")
BOOL_FLAGS = ("copy", "unzip")
FLAG_KEYS = ("copy", "unzip", "proto", "id")
_SOURCE_OF = {s: ArgSource(s) for s in SOURCES}
_RUN_ON = {r.value: r for r in RunOn}
_WORKER_CLASS = {w.value: w for w in WorkerClass}
DEFAULT_PRIORITY = 50
NOT_DEFAULTABLE = frozenset({"name", "module", "downstreamOf", "children", "args"})
"""Node keys a module's ``defaults`` may not set."""

_NAME_CHARS = re.compile(r"[A-Za-z0-9_-]+( [A-Za-z0-9_-]+)*")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class Problems:
    """Errors and warnings found while loading one graph, each a full sentence."""

    source: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, where: str, text: str) -> None:
        self.errors.append(f"{self.source}: {where}: {text}" if where else f"{self.source}: {text}")

    def warning(self, where: str, text: str) -> None:
        line = f"{self.source}: {where}: {text}" if where else f"{self.source}: {text}"
        self.warnings.append(line)

    def report(self, where: str, text: str, *, soft: bool) -> None:
        """An error, or a warning when ``soft``."""
        (self.warning if soft else self.error)(where, text)

    def raise_errors(self, warn: Callable[[str], None]) -> None:
        """Hand the warnings so far to ``warn``; raise every error found so far."""
        for line in self.warnings:
            warn(line)
        self.warnings.clear()
        if self.errors:
            raise GraphValidationError(list(self.errors))


@dataclass(frozen=True)
class RawNode:
    """One node object of the file, with ``children`` taken out and a name settled."""

    raw: Mapping[str, Any]
    path: Path_
    name: str
    parents: tuple[str, ...]
    named: bool

    @property
    def label(self) -> str:
        """How messages name the node."""
        return f"node {self.name!r}" if self.named else f"unnamed node {self.name!r}"


def truth(value: Any) -> bool:
    """A schema-checked boolean that may also be written as the string "true"/"false"."""
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def strings(value: Any) -> tuple[str, ...]:
    """A string or a list of strings as a tuple (order kept, duplicates dropped)."""
    items = [value] if isinstance(value, str) else list(value or ())
    return tuple(dict.fromkeys(str(v) for v in items))


# flattening


def flatten_nodes(nodes: Sequence[Mapping[str, Any]], path: Path_) -> list[RawNode]:
    """Every node of the file, inline children included, in definition order."""
    taken = set(_given_names(nodes))
    out: list[RawNode] = []
    _flatten(nodes, path, None, taken, out)
    return out


def _given_names(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    stack = list(nodes)
    while stack:
        raw = stack.pop()
        if "name" in raw:
            names.append(raw["name"])
        stack.extend(raw.get("children", ()))
    return names


def _flatten(
    nodes: Sequence[Mapping[str, Any]],
    path: Path_,
    container: str | None,
    taken: set[str],
    out: list[RawNode],
) -> None:
    for index, raw in enumerate(nodes):
        here = (*path, index)
        name = raw.get("name") or _derived_name(raw, len(out) + 1, taken)
        given = strings(raw.get("downstreamOf"))
        parents = given + ((container,) if container and container not in given else ())
        out.append(
            RawNode(
                raw={k: v for k, v in raw.items() if k != "children"},
                path=here,
                name=name,
                parents=parents or (ENTRY,),
                named="name" in raw,
            )
        )
        if raw.get("children"):
            _flatten(raw["children"], (*here, "children"), name, taken, out)


def _derived_name(raw: Mapping[str, Any], position: int, taken: set[str]) -> str:
    stem = _NOT_NAME_CHARS.sub("_", str(raw.get("module") or "node")) or "node"
    name, bump = f"{stem}-{position}", 0
    while name in taken:
        bump += 1
        name = f"{stem}-{position}-{bump}"
    taken.add(name)
    return name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a node, or None."""
    if name in (ENTRY, "parent"):
        return f"the name {name!r} is reserved; choose another name"
    if not _NAME_CHARS.fullmatch(name):
        return (
            f"the name {name!r} may contain only letters, digits, '_', '-' and single "
            "spaces between them ('.' separates Name.key in references)"
        )
    return None


# building


@dataclass(frozen=True)
class BuildContext:
    """What building a node needs besides the node itself."""

    problems: Problems
    options: Mapping[str, str]
    """Canonical option name (dashes) → the name as declared."""
    canonical: Callable[[str], str]
    expressions: dict[str, Expr] = field(default_factory=dict)
    """runIf texts parsed so far (an :class:`Expr` is immutable, so nodes share it)."""
    modules: dict[str, Declared] = field(default_factory=dict)
    """Module ref → its declarations, read once per load."""

    def declared(self, info: ModuleInfo | None) -> Declared:
        """The declarations of ``info``'s module (empty for none)."""
        key = info.ref if info else ""
        if key not in self.modules:
            self.modules[key] = Declared.of(info)
        return self.modules[key]


def merged_keys(raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The module's (checked) defaults with the node's own keys over them."""
    merged = {k: v for k, v in defaults.items() if k not in NOT_DEFAULTABLE}
    merged.update(raw)
    return merged


def with_work_folder(keys: dict[str, Any], info: ModuleInfo | None, node: str) -> dict[str, Any]:
    """``keys`` where a module that declares ``workfolder`` args gets, when the node sets
    none of them, the first as this node's tempdir in the pebble (removed with it)."""
    names = info.work_folder_args if info is not None else ()
    args = keys.get("args") or {}
    if not names or not isinstance(args, Mapping) or any(_given(args.get(n)) for n in names):
        return keys
    return {**keys, "args": {**args, names[0]: {"type": "tempdir", "id": node}}}


def _given(value: Any) -> bool:
    """An arg is set unless it is missing, empty or literally false."""
    return value not in (None, "", False) and not (
        isinstance(value, str) and value.strip().lower() == "false")


def build_node(
    node: RawNode, keys: Mapping[str, Any], info: ModuleInfo | None, ctx: BuildContext
) -> Node:
    """The :class:`Node` for ``node`` given its merged ``keys`` (see :func:`merged_keys`)."""
    where = node.label
    problem = name_problem(node.name) if node.named else None
    if problem:
        ctx.problems.error(where, problem)
    run_if, run_if_text = _run_if(keys.get("runIf"), where, ctx)
    declared = ctx.declared(info)
    is_global = truth(keys.get("global", False))
    return Node(
        name=node.name,
        module=str(keys.get("module") or ("service" if keys.get("serviceURL") else "")),
        parents=node.parents,
        args=_node_args(keys, where, ctx),
        run_on=_RUN_ON[keys.get("runOn", "always")],
        run_if=run_if,
        run_if_text=run_if_text,
        resolve_on_any=truth(keys.get("resolveOnAny", False)),
        priority=int(keys.get("priority", DEFAULT_PRIORITY)),
        worker_class=_WORKER_CLASS[keys.get("type", "normal")],
        gpu=truth(keys.get("gpu", False)),
        max_parallel=_int_or_none(keys.get("max_parallel", keys.get("replicas"))),
        restrictions=_restrictions(keys, where, ctx),
        timeout_s=_float_or_none(keys.get("timeout")),
        retries=int(keys.get("retries", 0)),
        retry_delay_s=float(keys.get("retryDelay", 0.0)),
        ccnode=_optional_arg(keys.get("ccnode"), "ccnode", where, ctx),
        deferred=truth(keys.get("deferred", False)),
        is_global=is_global,
        split_on=keys.get("splitOn"),
        merge=truth(keys.get("merge", False)),
        loop=keys.get("loop"),
        post=_posts(keys["post"], where, ctx) if "post" in keys else (),
        docker=keys.get("docker"),
        image=keys.get("image"),
        volumes=tuple(_volume(v) for v in keys["volumes"]) if "volumes" in keys else (),
        replicas=int(keys.get("replicas", 1)),
        workdir=_workdir(keys, where, ctx),
        config_root=keys.get("config"),
        provides=strings(keys["provides"]) if "provides" in keys else declared.provides,
        depends=strings(keys["depends"]) if "depends" in keys else declared.depends,
        outputs=_outputs(keys["outputs"]) if "outputs" in keys else declared.outputs,
        cache=_cache(keys.get("cache")),
        run_on_head=truth(keys.get("runOnHead", False)),
        service_url=keys.get("serviceURL"),
        module_ref=info.ref if info else None,
        is_input=ENTRY in node.parents and not is_global,
    )


@dataclass(frozen=True)
class Declared:
    """A module's ``provides``, ``depends`` and ``outputs``, as nodes carry them."""

    provides: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=empty_map)

    @classmethod
    def of(cls, info: ModuleInfo | None) -> Declared:
        if info is None:
            return cls()
        return cls(info.provides, info.depends, _outputs(info.outputs or {}))


def _outputs(declared: Mapping[str, Any]) -> Mapping[str, str]:
    return frozen_map({str(k): str(v) for k, v in declared.items()})


def declares_outputs(keys: Mapping[str, Any], info: ModuleInfo | None) -> bool:
    """Whether the node's outputs are known (from the node or its module)."""
    return "outputs" in keys or (info is not None and info.outputs is not None)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _volume(item: Sequence[str]) -> tuple[str, str, str]:
    return (item[0], item[1], item[2] if len(item) > 2 else "rw")


def _cache(raw: Mapping[str, Any] | None) -> CacheSpec | None:
    if raw is None:
        return None
    return CacheSpec(args=strings(raw.get("args")), expires_s=_float_or_none(raw.get("expires")))


def _run_if(text: str | None, where: str, ctx: BuildContext) -> tuple[Expr | None, str | None]:
    if text is None:
        return None, None
    try:
        if text not in ctx.expressions:
            ctx.expressions[text] = parse_expr(text)
        return ctx.expressions[text], text
    except ExprError as e:
        ctx.problems.error(where, f"key 'runIf': {e}")
        return None, text


def _restrictions(
    keys: Mapping[str, Any], where: str, ctx: BuildContext
) -> tuple[Restriction, ...]:
    parsed: list[Restriction] = []
    for key, condition in keys.get("restrictions", {}).items():
        try:
            parsed.append(parse_restriction(key, condition))
        except ExprError as e:
            ctx.problems.error(where, f"key 'restrictions': {e}")
    return tuple(parsed)


def _workdir(keys: Mapping[str, Any], where: str, ctx: BuildContext) -> ArgSpec | None:
    if "workdir" in keys and "dir" in keys:
        ctx.problems.error(where, "give 'workdir' or its alias 'dir', not both")
    value = keys.get("workdir", keys.get("dir"))
    return _optional_arg(value, "workdir", where, ctx)


def _optional_arg(value: Any, what: str, where: str, ctx: BuildContext) -> ArgSpec | None:
    return None if value is None else parse_arg(value, f"{what}", where, ctx)


def _posts(
    items: Sequence[Mapping[str, Any]], where: str, ctx: BuildContext
) -> tuple[PostSpec, ...]:
    return tuple(
        PostSpec(
            output=item["output"],
            target=parse_arg(item["target"], f"post[{i}].target", where, ctx),
            basename=truth(item.get("basename", True)),
        )
        for i, item in enumerate(items)
    )


def _args(raw: Mapping[str, Any], where: str, ctx: BuildContext) -> dict[str, ArgSpec]:
    return {name: parse_arg(value, f"arg {name!r}", where, ctx) for name, value in raw.items()}


_LEGACY_REF = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+")


def _node_args(keys: Mapping[str, Any], where: str, ctx: BuildContext) -> Mapping[str, ArgSpec]:
    """The node's args, reading an early CryoCloud spelling with a warning:
    ``{"Node.output": "argname"}`` in ``args`` is ``{"argname": {"output": "Node.output",
    "default": null}}``. (A node's ``options``, more args, are read by the loader.)"""
    if "args" not in keys:
        return EMPTY
    raw: dict[str, Any] = {}
    for name, value in (keys.get("args") or {}).items():
        if _LEGACY_REF.fullmatch(name) and isinstance(value, str) and value.isidentifier():
            ctx.problems.warning(
                where, f"legacy format: write args {{{name!r}: {value!r}}} as "
                f'{{{value!r}: {{"output": {name!r}}}}}')
            raw[value] = {"output": name, "default": None}
        else:
            raw[name] = value
    return MappingProxyType(_args(raw, where, ctx))


def parse_arg(value: Any, what: str, where: str, ctx: BuildContext) -> ArgSpec:
    """Read one argument value (a literal or a spec object) into an :class:`ArgSpec`."""
    if type(value) is not dict:
        return ArgSpec(ArgSource.LITERAL, None, value)
    sources = [s for s in SOURCES if s in value]
    if len(sources) > 1:
        ctx.problems.error(
            where,
            f"{what} has {len(sources)} sources ({', '.join(sources)}); keep one and use "
            "'default' for a fallback value",
        )
    source, ref = ArgSource.DEFAULT, None
    if sources:
        source = _SOURCE_OF[sources[0]]
        ref = _checked_ref(source, str(value[sources[0]]), what, where, ctx)
    flags = {k: value[k] for k in FLAG_KEYS if k in value}
    for key in BOOL_FLAGS:
        if key in flags:
            flags[key] = truth(flags[key])
    return ArgSpec(
        source,
        ref,
        None,
        "default" in value,
        value.get("default"),
        value.get("type"),
        MappingProxyType(flags) if flags else EMPTY,
    )


def _checked_ref(source: ArgSource, ref: str, what: str, where: str, ctx: BuildContext) -> str:
    if source is ArgSource.OPTION:
        declared = ctx.options.get(ctx.canonical(ref))
        if declared is None:
            hint = suggest(ref, list(ctx.options.values())) or (
                f"; declare it in the workflow's \"options\", e.g. "
                f"\"options\": {{\"{ref}\": {{\"help\": \"...\", \"default\": ...}}}}")
            known = ", ".join(ctx.options.values()) or "none"
            ctx.problems.error(
                where,
                f"{what} reads option {ref!r}, which the workflow does not declare "
                f"(options: {known}){hint}",
            )
            return ref
        return declared
    if source in (ArgSource.OUTPUT, ArgSource.STAT):
        node, dot, key = ref.partition(".")
        if not dot or not node or not key:
            ctx.problems.error(
                where,
                f"{what}: write the {source.value} reference {ref!r} as 'Name.key' or 'parent.key'",
            )
        elif source is ArgSource.STAT and key not in STAT_NAMES:
            ctx.problems.error(
                where,
                f"{what}: {key!r} is not a stat; use one of "
                f"{', '.join(sorted(STAT_NAMES))}{suggest(key, STAT_NAMES)}",
            )
    return ref
