"""The immutable graph model every loader produces and the engine consumes.

A :class:`Graph` is built once (by a loader in this package), checked, and never
changed afterwards. Mappings are wrapped read-only; records are frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryoflow.graph.expr import Expr, Restriction

ENTRY = "entry"
"""The implicit root of every graph; input nodes are its direct children."""

STAT_NAMES = frozenset(
    {
        "node",
        "worker",
        "priority",
        "runtime",
        "cpu_time",
        "max_memory",
        "attempts",
        "started",
        "finished",
    }
)
"""The names a ``{"stat": "Name.p"}`` argument may ask for."""

EMPTY: Mapping[str, Any] = MappingProxyType({})


def empty_map() -> Mapping[str, Any]:
    """Default factory for read-only mapping fields of frozen records."""
    return EMPTY


def frozen_map(data: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """Return a read-only view of a shallow copy of ``data``."""
    return MappingProxyType(dict(data or {}))


class Outcome(StrEnum):
    """How a node ended for one pebble (or one branch of it)."""

    SUCCESS = "success"  #: the job returned progress 100
    ERROR = "error"  #: the job raised, failed to start, or an argument was missing
    TIMEOUT = "timeout"  #: the job ran past the node's ``timeout``
    CANCEL = "cancel"  #: the job was cancelled by a user or a shutdown
    SKIPPED = "skipped"  #: the node did not run (runOn, runIf, or a skipped branch)


class RunOn(StrEnum):
    """When a resolved node runs, given its parents' combined outcome."""

    SUCCESS = "success"  #: only after success
    ERROR = "error"  #: after error (and timeout, unless a sibling takes timeouts)
    TIMEOUT = "timeout"  #: only after timeout
    ALWAYS = "always"  #: after any outcome except skipped
    NEVER = "never"  #: never runs


class WorkerClass(StrEnum):
    """The kind of worker slot a job needs."""

    NORMAL = "normal"  #: one per CPU by default
    ADMIN = "admin"  #: quick, I/O-bound housekeeping jobs
    GPU = "gpu"  #: a worker that owns one GPU


class ArgSource(StrEnum):
    """Where an argument's value comes from."""

    LITERAL = "literal"  #: the value written in the graph
    OPTION = "option"  #: a command-line option of the workflow
    CONFIG = "config"  #: a key under the node's (or workflow's) config root
    OUTPUT = "output"  #: an output key of a parent or a named node
    STAT = "stat"  #: a runtime statistic of a parent or a named node
    DEFAULT = "default"  #: only a default was given


@dataclass(frozen=True)
class ArgSpec:
    """How to resolve one argument of a node for a job.

    ``ref`` is the option name, config key, ``node.key`` or ``node.stat`` depending
    on ``source``; ``value`` holds a literal. ``flags`` keeps the type flags
    (``copy``, ``unzip``, ``proto``, ``id``) exactly as written.
    """

    source: ArgSource
    ref: str | None = None
    value: Any = None
    has_default: bool = False
    default: Any = None
    type: str | None = None
    flags: Mapping[str, Any] = field(default_factory=empty_map)

    @property
    def ref_node(self) -> str | None:
        """The node part of an ``output``/``stat`` reference (``parent`` or a name)."""
        if self.source in (ArgSource.OUTPUT, ArgSource.STAT) and self.ref:
            return self.ref.split(".", 1)[0]
        return None

    @property
    def ref_key(self) -> str | None:
        """The key part of an ``output``/``stat`` reference."""
        if self.source in (ArgSource.OUTPUT, ArgSource.STAT) and self.ref and "." in self.ref:
            return self.ref.split(".", 1)[1]
        return None


@dataclass(frozen=True)
class PostSpec:
    """Upload ``retval[output]`` to ``target`` after a successful job."""

    output: str
    target: ArgSpec
    basename: bool = True


@dataclass(frozen=True)
class CacheSpec:
    """Reuse an earlier successful result when the listed args hash the same."""

    args: tuple[str, ...]
    expires_s: float | None = None


@dataclass(frozen=True)
class Node:
    """One node of a graph, with the module's defaults already merged in."""

    name: str
    module: str
    parents: tuple[str, ...] = (ENTRY,)
    args: Mapping[str, ArgSpec] = field(default_factory=empty_map)
    run_on: RunOn = RunOn.ALWAYS
    run_if: Expr | None = None
    run_if_text: str | None = None
    resolve_on_any: bool = False
    priority: int = 50
    worker_class: WorkerClass = WorkerClass.NORMAL
    gpu: bool = False
    max_parallel: int | None = None
    restrictions: tuple[Restriction, ...] = ()
    timeout_s: float | None = None
    retries: int = 0
    retry_delay_s: float = 0.0
    ccnode: ArgSpec | None = None
    deferred: bool = False
    is_global: bool = False
    split_on: str | None = None
    merge: bool = False
    loop: str | None = None
    post: tuple[PostSpec, ...] = ()
    docker: str | None = None
    image: str | None = None
    volumes: tuple[tuple[str, str, str], ...] = ()
    replicas: int = 1
    workdir: ArgSpec | None = None
    config_root: str | None = None
    provides: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=empty_map)
    cache: CacheSpec | None = None
    run_on_head: bool = False
    service_url: str | None = None
    module_ref: str | None = None
    """Where the module was found: a file path or a dotted import name."""
    is_input: bool = False
    """True for a direct, non-global child of ``entry`` (it runs an input module)."""
    extra: Mapping[str, Any] = field(default_factory=empty_map)
    """Notation-specific data kept for executors (function-spec ``funcname``, ...)."""

    @property
    def needs(self) -> WorkerClass:
        """The worker class that runs this node's jobs."""
        return WorkerClass.GPU if self.gpu else self.worker_class


@dataclass(frozen=True)
class OptionSpec:
    """A workflow option, exposed as ``--name`` on ``ccworkflow``'s command line."""

    name: str
    type: str = "str"
    default: Any = None
    help: str = ""
    required: bool = False
    typed: bool = True
    """False when the type was inferred from the default (an int default then also takes
    a decimal number on the command line, as CryoCloud's untyped options did)."""


@dataclass(frozen=True)
class Graph:
    """A checked, immutable workflow graph.

    ``nodes`` is in topological order (parents before children). ``children`` maps
    every node name, and ``entry``, to its children in definition order.
    """

    name: str
    nodes: Mapping[str, Node]
    description: str = ""
    options: Mapping[str, OptionSpec] = field(default_factory=empty_map)
    config: Mapping[str, Any] = field(default_factory=empty_map)
    source: str = "<memory>"
    flow: str | None = None
    """The parsed grouping of a flow string, for ``--explain``."""
    children: Mapping[str, tuple[str, ...]] = field(default_factory=empty_map)

    def __post_init__(self) -> None:
        if not self.children:
            object.__setattr__(self, "children", _children_of(self.nodes))

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, name: str) -> Node:
        """Return the node called ``name``."""
        return self.nodes[name]

    def children_of(self, name: str) -> tuple[str, ...]:
        """Names of the nodes directly downstream of ``name``."""
        return self.children.get(name, ())

    @property
    def input_nodes(self) -> tuple[Node, ...]:
        """The nodes that run input modules."""
        return tuple(n for n in self.nodes.values() if n.is_input)

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """Every ``(parent, child)`` pair, ``entry`` included."""
        return tuple((p, n.name) for n in self.nodes.values() for p in n.parents)


def _children_of(nodes: Mapping[str, Node]) -> Mapping[str, tuple[str, ...]]:
    children: dict[str, list[str]] = {ENTRY: []}
    for node in nodes.values():
        children.setdefault(node.name, [])
        for parent in node.parents:
            children.setdefault(parent, []).append(node.name)
    return MappingProxyType({k: tuple(v) for k, v in children.items()})
