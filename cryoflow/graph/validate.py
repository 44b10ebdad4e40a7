"""Semantic checks of a graph: everything the JSON Schema cannot say.

Structure first (unique names, known parents, no cycles, every node reachable, input
nodes running input modules), then per-node checks against the modules' declarations
(arg names, ``output``/``stat`` references, ``config`` roots, ``depends``, nested
splits, ``runIf`` references). Every check is linear in nodes + edges, apart from
the ancestor sets that ``output: Name.key`` references need, kept as bit sets.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from cryoflow.graph.model import (
    ENTRY,
    STAT_NAMES,
    ArgSource,
    ArgSpec,
    Node,
    OptionSpec,
    WorkerClass,
)
from cryoflow.graph.modules import ModuleInfo
from cryoflow.graph.nodes import Problems
from cryoflow.graph.options import canonical
from cryoflow.graph.schema import suggest


@dataclass(frozen=True)
class GraphFacts:
    """A graph's nodes before checking, and what the checks need to know about them."""

    nodes: Sequence[Node]
    """In definition order; names may still clash."""
    labels: Mapping[str, str]
    """Node name → how messages name it."""
    infos: Mapping[str, ModuleInfo]
    """Node name → its module, for nodes whose module was found."""
    outputs_known: frozenset[str]
    """Names of nodes whose output keys are declared (by the node or its module)."""
    options: Mapping[str, OptionSpec] = field(default_factory=dict)
    has_config: bool = False
    input_modules: bool = True
    """Whether input nodes must run input modules (false for flow strings and specs)."""
    parents_key: str = "downstreamOf"
    """What the notation calls a node's parents, for messages."""

    @cached_property
    def names(self) -> frozenset[str]:
        """Every node name."""
        return frozenset(n.name for n in self.nodes)

    @cached_property
    def canonical_options(self) -> frozenset[str]:
        """Option names with underscores as dashes."""
        return frozenset(canonical(o) for o in self.options)


def validate(facts: GraphFacts, problems: Problems) -> tuple[Node, ...]:
    """Check ``facts``; return the nodes in topological order (cyclic ones left out)."""
    by_name = _unique(facts, problems)
    order, on_cycles = _toposort(facts, by_name, problems)
    _reachable(facts, by_name, order, on_cycles, problems)
    _inputs(facts, problems)
    for node in facts.nodes:
        _node_checks(node, facts, problems)
    _References(facts, order, problems).check()
    _splits(order, facts, problems)
    return tuple(order)


# structure


def _unique(facts: GraphFacts, problems: Problems) -> dict[str, Node]:
    counts = Counter(n.name for n in facts.nodes)
    for name, count in counts.items():
        if count > 1:
            problems.error(
                "", f"the node name {name!r} is used by {count} nodes; names must be unique"
            )
    by_name: dict[str, Node] = {}
    for node in facts.nodes:
        by_name.setdefault(node.name, node)
    if not facts.nodes:
        problems.error("", "the workflow has no nodes; add an input node under 'nodes'")
    return by_name


def _toposort(
    facts: GraphFacts, by_name: Mapping[str, Node], problems: Problems
) -> tuple[list[Node], set[str]]:
    """Nodes in topological order (definition order among equals), and nodes on cycles."""
    waiting: dict[str, int] = {}
    children: dict[str, list[str]] = {ENTRY: []}
    for node in by_name.values():
        known = [p for p in node.parents if p == ENTRY or p in by_name]
        for parent in node.parents:
            if parent not in known:
                problems.error(facts.labels[node.name], _unknown_parent(parent, by_name, facts))
        waiting[node.name] = len([p for p in known if p != ENTRY])
        for parent in known:
            children.setdefault(parent, []).append(node.name)
    ready = deque(n for n in by_name if waiting[n] == 0)
    order: list[Node] = []
    while ready:
        name = ready.popleft()
        order.append(by_name[name])
        for child in children.get(name, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    on_cycles: set[str] = set()
    if len(order) < len(by_name):
        for cycle in _cycles([n for n, w in waiting.items() if w > 0], by_name):
            on_cycles.update(cycle)
            problems.error(
                "", f"the graph has a cycle: {' -> '.join(cycle)}; remove one of these edges"
            )
    return order, on_cycles


def _unknown_parent(parent: str, by_name: Mapping[str, Node], facts: GraphFacts) -> str:
    hint = suggest(parent, [*by_name, ENTRY])
    return f"{facts.parents_key} names {parent!r}, which is not a node of this graph{hint}"


def _cycles(stuck: list[str], by_name: Mapping[str, Node]) -> Iterator[list[str]]:
    """One cycle per walk through the nodes Kahn's algorithm could not order.

    Every stuck node has a stuck parent, so walking up parents must repeat a node.
    Each node is walked at most once, so this is linear. A cycle is printed in edge
    direction, starting at its node defined first.
    """
    position = {name: i for i, name in enumerate(stuck)}
    seen: set[str] = set()
    for start in stuck:
        if start in seen:
            continue
        walk: dict[str, int] = {}
        name = start
        while name not in walk and name not in seen:
            walk[name] = len(walk)
            name = next(p for p in by_name[name].parents if p in position)
        seen.update(walk)
        if name in walk:
            down = list(reversed(list(walk)[walk[name] :]))
            first = min(range(len(down)), key=lambda i: position[down[i]])
            down = down[first:] + down[:first]
            yield [*down, down[0]]


def _reachable(
    facts: GraphFacts,
    by_name: Mapping[str, Node],
    order: list[Node],
    on_cycles: set[str],
    problems: Problems,
) -> None:
    reached: set[str] = set()
    for node in order:
        if node.is_global or any(p == ENTRY or p in reached for p in node.parents):
            reached.add(node.name)
    for node in by_name.values():
        known = all(p == ENTRY or p in by_name for p in node.parents)
        if node.name not in reached and node.name not in on_cycles and known:
            problems.error(
                facts.labels[node.name],
                "no input node leads to it (its parents never run); connect it with "
                'downstreamOf or mark it "global": true',
            )


def _inputs(facts: GraphFacts, problems: Problems) -> None:
    if not facts.input_modules:
        return
    if facts.nodes and not any(n.is_input for n in facts.nodes):
        problems.error(
            "",
            "the workflow has no input node; add a node with an input module "
            '(cmdline, dirwatcher, netwatcher) and "downstreamOf": ["entry"]',
        )
    for node in facts.nodes:
        info = facts.infos.get(node.name)
        where = facts.labels[node.name]
        if node.is_input and len(node.parents) > 1:
            problems.error(
                where, "an input node is downstream of 'entry' only; remove its other parents"
            )
        if info is None:
            continue
        if node.is_input and not info.is_input:
            problems.error(
                where,
                f"it is directly downstream of 'entry', so it is an input node, but module "
                f"{info.name!r} is not an input module (it has no start function); "
                "connect it to its parents with downstreamOf",
            )
        elif not node.is_input and not node.is_global and info.is_input:
            problems.error(
                where,
                f"module {info.name!r} is an input module; make the node directly "
                "downstream of 'entry'",
            )


# per node


def _node_checks(node: Node, facts: GraphFacts, problems: Problems) -> None:
    where = facts.labels[node.name]
    info = facts.infos.get(node.name)
    if info is not None:
        _arg_names(node, info, where, problems)
    for spec_name, spec in _all_arg_specs(node):
        if spec.source is ArgSource.CONFIG and not (node.config_root or facts.has_config):
            problems.error(
                where,
                f"{spec_name} reads config {spec.ref!r}, but neither the node nor the "
                'workflow has a \'config\'; add "config": "Root.Path" to the node',
            )
    _named_args(node, where, problems)
    if node.gpu and node.worker_class is WorkerClass.ADMIN:
        problems.error(where, 'a node cannot be both "gpu": true and "type": "admin"')
    _run_if_refs(node, facts, problems)
    _restriction_channels(node, facts, problems)


def _restriction_channels(node: Node, facts: GraphFacts, problems: Problems) -> None:
    """A restriction reads status values that a node's jobs publish: its channel is a node."""
    for rule in node.restrictions:
        if rule.channel not in facts.names:
            problems.error(
                f"{facts.labels[node.name]}: key 'restrictions'",
                f"restriction {rule.text} reads the channel {rule.channel!r}, which is no node "
                "of this graph, so nothing would ever publish it and the node would wait for "
                f"ever; name a node (NODE:pending, NODE:running or a status value its jobs "
                f"set){suggest(rule.channel, sorted(facts.names))}",
            )


def _arg_names(node: Node, info: ModuleInfo, where: str, problems: Problems) -> None:
    inputs = info.inputs
    if inputs is None or "*" in inputs:  # "*": the module takes any argument
        return
    for arg in node.args:
        if arg not in inputs:
            known = ", ".join(inputs) or "none"
            problems.error(
                where,
                f"arg {arg!r} is not an input of module {info.name!r} "
                f"(inputs: {known}){suggest(arg, list(inputs))}",
            )


def _all_arg_specs(node: Node) -> Iterator[tuple[str, ArgSpec]]:
    for name, spec in node.args.items():
        yield f"arg {name!r}", spec
    for i, post in enumerate(node.post):
        yield f"post[{i}].target", post.target
    if node.ccnode is not None:
        yield "ccnode", node.ccnode
    if node.workdir is not None:
        yield "workdir", node.workdir


def _named_args(node: Node, where: str, problems: Problems) -> None:
    named = [("splitOn", node.split_on), ("loop", node.loop)]
    named += [("cache", a) for a in (node.cache.args if node.cache else ())]
    for key, arg in named:
        if arg is not None and arg not in node.args:
            problems.error(
                where,
                f"{key} names arg {arg!r}, which the node does not have; add it to "
                f"'args'{suggest(arg, list(node.args))}",
            )


def _run_if_refs(node: Node, facts: GraphFacts, problems: Problems) -> None:
    if node.run_if is None:
        return
    where = f"{facts.labels[node.name]}: key 'runIf'"
    names, options = facts.names, facts.canonical_options
    for ref in sorted(node.run_if.refs, key=str):
        head, _, key = ref.name.partition(".")
        if ref.kind == "option" and canonical(ref.name) not in options:
            problems.error(
                where,
                f"{ref} names no option of the workflow{suggest(ref.name, list(facts.options))}",
            )
        elif ref.kind in ("output", "stat") and head not in names and head != "parent":
            problems.error(
                where, f"{ref} names no node of this graph{suggest(head, sorted(names))}"
            )
        elif ref.kind == "stat" and key not in STAT_NAMES:
            problems.error(where, f"{ref}: {key!r} is not a stat{suggest(key, STAT_NAMES)}")
        elif ref.kind == "config" and not (node.config_root or facts.has_config):
            problems.error(
                where, f"{ref} reads config, but neither the node nor the workflow has a 'config'"
            )


# references along the graph


_HOST_KEYS = frozenset({"node"})
_SOFT_KEYS = _HOST_KEYS | {"caller"}
"""Keys CryoCloud graphs read that modules rarely declare: the host, and the input
node that made an item (CryoCloud's inputs added ``caller`` to every item)."""


class _References:
    """``output``/``stat`` references and ``depends``, checked against ancestors."""

    def __init__(self, facts: GraphFacts, order: Sequence[Node], problems: Problems) -> None:
        self.facts = facts
        self.order = order
        self.problems = problems
        self.by_name = {n.name: n for n in order}
        self.all_names = facts.names
        self.index = {n.name: i for i, n in enumerate(order)}

    @cached_property
    def ancestors(self) -> dict[str, int]:
        """Node name → bit set of its ancestors (bit i is ``order[i]``)."""
        bit = {n.name: 1 << i for i, n in enumerate(self.order)}
        up: dict[str, int] = {}
        for node in self.order:
            mask = 0
            for parent in node.parents:
                if parent in bit:
                    mask |= up[parent] | bit[parent]
            up[node.name] = mask
        return up

    def check(self) -> None:
        for node in self.order:
            for what, spec in _all_arg_specs(node):
                if spec.source in (ArgSource.OUTPUT, ArgSource.STAT) and spec.ref_key:
                    self._reference(node, what, spec)
        self._depends()

    def _reference(self, node: Node, what: str, spec: ArgSpec) -> None:
        head, key = spec.ref_node or "", spec.ref_key or ""
        where = self.facts.labels[node.name]
        # An output with a default never fails a run, so it is only a note; so are the
        # host and the caller, which CryoCloud graphs read as outputs ("parent.node").
        soft = spec.has_default or (spec.source is ArgSource.OUTPUT and key in _SOFT_KEYS)
        text = f"{what}: {spec.source.value} {spec.ref!r}"
        if not spec.has_default and spec.source is ArgSource.OUTPUT and key in _HOST_KEYS:
            text += f' (the host that ran a node is {{"stat": "{head}.{key}"}})'

        if head == "parent":
            self._parent_reference(node, key, spec, text, soft)
        elif head not in self.all_names:
            self.problems.report(
                where,
                f"{text} names no node of this graph{suggest(head, sorted(self.all_names))}",
                soft=soft,
            )
        elif head in self.by_name and not node.is_global and not self._upstream(head, node.name):
            self.problems.report(
                where,
                f"{text}: node {head!r} is not upstream of {node.name!r}, so its "
                "output cannot exist when this node runs",
                soft=soft,
            )
        elif spec.source is ArgSource.OUTPUT:
            self._key(head, key, where, text, soft)

    def _upstream(self, name: str, of: str) -> bool:
        return bool(self.ancestors[of] >> self.index[name] & 1)

    def _parent_reference(self, node: Node, key: str, spec: ArgSpec, text: str, soft: bool) -> None:
        where = self.facts.labels[node.name]
        parents = [p for p in node.parents if p != ENTRY]
        if node.is_global or spec.source is ArgSource.STAT or key == "error":
            return
        if not parents:
            self.problems.report(
                where, f"{text}: the node has no parent node to read from", soft=soft
            )
            return
        offered = self._offered(parents)
        if offered is not None and key not in offered:
            listed = ", ".join(sorted(offered)) or "none"
            self.problems.report(
                where,
                f"{text}: no parent has an output {key!r} (parents' outputs: {listed})"
                f"{suggest(key, sorted(offered))}",
                soft=soft,
            )

    def _offered(self, names: Sequence[str]) -> set[str] | None:
        """The output keys the named nodes declare, or None if any of them is open."""
        keys: set[str] = {"error"}
        for name in names:
            if name not in self.facts.outputs_known or name not in self.by_name:
                return None
            keys.update(self.by_name[name].outputs)
        return keys

    def _key(self, head: str, key: str, where: str, text: str, soft: bool) -> None:
        offered = self._offered([head])
        if offered is not None and key not in offered:
            listed = ", ".join(sorted(offered - {"error"})) or "none"
            self.problems.report(
                where,
                f"{text}: node {head!r} has no output {key!r} (its outputs: {listed})"
                f"{suggest(key, sorted(offered))}",
                soft=soft,
            )

    def _depends(self) -> None:
        if not any(n.depends for n in self.order):
            return
        above: dict[str, frozenset[str]] = {}
        for node in self.order:
            got: set[str] = set()
            for parent in node.parents:
                if parent in self.by_name:
                    got |= above[parent] | set(self.by_name[parent].provides)
            above[node.name] = frozenset(got)
            missing = [d for d in node.depends if d not in got]
            if missing:  # a note, as CryoCloud never enforced depends
                self.problems.warning(
                    self.facts.labels[node.name],
                    f"it depends on {', '.join(map(repr, missing))}, which no upstream node "
                    "provides; add a node that provides it upstream, or override 'depends'",
                )


# splits


def _splits(order: Sequence[Node], facts: GraphFacts, problems: Problems) -> None:
    """``merge`` needs an open split; a split inside a branch needs its own merge."""
    stacks: dict[str, tuple[str, ...]] = {ENTRY: ()}
    nested: dict[str, str] = {}
    merged: set[str] = set()
    for node in order:
        stack = max((stacks.get(p, ()) for p in node.parents), key=len, default=())
        if node.split_on:
            if stack:
                nested[node.name] = stack[-1]
            stack = (*stack, node.name)
        if node.merge:
            if not stack:
                problems.error(
                    facts.labels[node.name],
                    "\"merge\": true, but no splitOn node is upstream; remove 'merge' or "
                    "add 'splitOn' upstream",
                )
            else:
                merged.add(stack[-1])
                stack = stack[:-1]
        stacks[node.name] = stack
    for inner, outer in nested.items():
        if inner not in merged:
            problems.error(
                facts.labels[inner],
                f"its splitOn is nested in the branches of split node {outer!r} and is never "
                'merged; mark a node downstream of it with "merge": true before the outer merge',
            )
