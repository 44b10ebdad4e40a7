"""The pebble engine: a pure, deterministic state machine (its rules: docs/semantics.md).

``Engine.handle(event, now)`` applies one event to the pebble it concerns and returns
the actions the head must carry out (persist node states, queue jobs, finish the
pebble). No I/O, no clocks, no threads: time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryoflow.engine.args import Scope, file_flags, option_key, resolve_arg, resolve_ref
from cryoflow.engine.pebble import OPEN, PebbleState, visible_state
from cryoflow.engine.records import (
    Action,
    Branch,
    CancelJob,
    Event,
    JobFinished,
    JobLost,
    JobSpec,
    NodeChanged,
    NodeRemoved,
    NodeState,
    NodeStatus,
    PebbleAdded,
    PebbleCancelled,
    PebbleDone,
    PebbleOutcome,
    PebbleReopened,
    PebbleRetried,
    QueueJob,
    evolve,
    job_id,
    node_label,
)
from cryoflow.engine.resolve import FAILURES, combine, resolution, runs_on
from cryoflow.engine.topology import Topology, build_topology, node_of
from cryoflow.errors import ArgumentError, ExprError
from cryoflow.graph.instances import HandlerInstance, base_name, handler_instance, is_instance
from cryoflow.graph.model import EMPTY, ENTRY, ArgSource, Graph, Node, Outcome, RunOn


class Engine:
    """Holds the state of every active pebble and applies events to it."""

    def __init__(
        self,
        graph: Graph,
        *,
        options: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        poison_limit: int = 3,
    ) -> None:
        self.graph = graph
        self.topo: Topology = build_topology(graph)
        self.options = {option_key(k): v for k, v in (options or {}).items()}
        self.config = dict(config or {})
        self.poison_limit = poison_limit
        self._pebbles: dict[int, PebbleState] = {}
        self._ancestors: dict[str, frozenset[str]] = {}
        self._descendants: dict[str, frozenset[str]] = {}

    # ------------------------------------------------------------------ public API

    @property
    def active(self) -> int:
        """Number of pebbles not yet done."""
        return len(self._pebbles)

    def pebble(self, pebble_id: int) -> PebbleState | None:
        """The live state of an active pebble (read it, do not change it)."""
        return self._pebbles.get(pebble_id)

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply ``event`` and return the actions it causes, in order."""
        step = _Step(self, now)
        match event:
            case PebbleAdded():
                step.add_pebble(event)
            case JobFinished():
                step.job_finished(event)
            case JobLost():
                step.job_lost(event)
            case PebbleCancelled():
                step.cancel(event)
            case PebbleRetried():
                step.retry(event)
        return step.actions

    def restore(
        self,
        pebble_id: int,
        input_node: str,
        item: Mapping[str, Any],
        states: Mapping[tuple[str, Branch], NodeState],
    ) -> None:
        """Load an unfinished pebble from the store after a restart."""
        pebble = PebbleState(pebble_id, input_node, dict(item))
        for (name, branch), state in states.items():
            pebble.put(name, branch, state, self._is_main(name))
        self._pebbles[pebble_id] = pebble

    def replace_graph(self, graph: Graph) -> None:
        """Use ``graph`` (a grown copy of the current one) from now on; states are kept."""
        self.graph = graph
        self.topo = build_topology(graph)
        self._ancestors.clear()
        self._descendants.clear()

    def forget(self, pebble_id: int) -> None:
        """Drop a restored pebble from memory (nothing to do for it after all)."""
        self._pebbles.pop(pebble_id, None)

    def is_current(self, job_id: str) -> bool:
        """Is ``job_id`` the attempt the engine waits for (not stale, not cancelled)?"""
        return _Step(self, 0.0).job_target(job_id) is not None

    def check_idle(self, pebble_id: int, now: float) -> list[Action]:
        """Release deferred jobs and finish the pebble if nothing else is open."""
        step = _Step(self, now)
        pebble = self._pebbles.get(pebble_id)
        if pebble is not None:
            step.settle(pebble)
        return step.actions

    # ------------------------------------------------------------------ internals

    def _is_main(self, name: str) -> bool:
        """Does this instance hold back deferred nodes while it is open?"""
        return base_name(name) not in self.topo.after_deferred

    def descendants(self, name: str) -> frozenset[str]:
        """Every node downstream of ``name`` (cached)."""
        found = self._descendants.get(name)
        if found is None:
            seen: set[str] = set()
            todo = list(self.graph.children_of(name))
            while todo:
                child = todo.pop()
                if child not in seen:
                    seen.add(child)
                    todo.extend(self.graph.children_of(child))
            found = self._descendants[name] = frozenset(seen)
        return found

    def ancestors(self, name: str) -> frozenset[str]:
        """Every node upstream of ``name`` (cached)."""
        found = self._ancestors.get(name)
        if found is None:
            seen: set[str] = set()
            todo = list(self.graph.nodes[name].parents)
            while todo:
                parent = todo.pop()
                if parent != ENTRY and parent not in seen:
                    seen.add(parent)
                    todo.extend(self.graph.nodes[parent].parents)
            found = self._ancestors[name] = frozenset(seen)
        return found


class _Step:
    """The work of one event: mutates pebble state, collects actions."""

    def __init__(self, engine: Engine, now: float) -> None:
        self.engine = engine
        self.graph = engine.graph
        self.topo = engine.topo
        self.now = now
        self.actions: list[Action] = []

    # ------------------------------------------------------------------ events

    def add_pebble(self, event: PebbleAdded) -> None:
        item = dict(event.item)  # the input node's output is the same (read-only) dict
        pebble = PebbleState(event.pebble_id, event.input_node, item)
        self.engine._pebbles[event.pebble_id] = pebble
        for node in self.graph.input_nodes:
            if node.name == event.input_node:
                self.finish(pebble, node.name, (), Outcome.SUCCESS, output=item)
            else:
                self.finish(pebble, node.name, (), Outcome.SKIPPED)
        if event.input_node == ENTRY:
            self.offer_children(pebble, ENTRY, ())
        self.settle(pebble)

    def job_finished(self, event: JobFinished) -> None:
        found = self.job_target(event.job_id, event.job)
        if found is None:
            return
        pebble, name, branch, state = found
        node = node_of(self.graph, name)
        failed = event.outcome in (Outcome.ERROR, Outcome.TIMEOUT)
        stats = {**event.stats, "priority": node.priority}
        if failed and state.attempts <= node.retries:
            delay = node.retry_delay_s * 2 ** (state.attempts - 1)
            self.requeue(pebble, name, branch, evolve(state, attempts=state.attempts + 1), delay)
        else:
            output = _as_output(event.retval) if event.outcome is Outcome.SUCCESS else None
            self.finish(
                pebble, name, branch, event.outcome, output=output, error=event.error,
                stats=stats, base=state,
            )
        self.settle(pebble)

    def job_lost(self, event: JobLost) -> None:
        found = self.job_target(event.job_id, event.job)
        if found is None:
            return
        pebble, name, branch, state = found
        uncharged = int(state.stats.get("head_restarts", 0)) + (not event.charged)
        stats = {**state.stats, "head_restarts": uncharged} if uncharged else state.stats
        state = evolve(state, lost=state.lost + 1, stats=stats)
        charged = state.lost - uncharged
        if charged >= self.engine.poison_limit:
            error = f"worker lost {charged} times running this job (last: {event.reason})"
            self.finish(pebble, name, branch, Outcome.ERROR, error=error, base=state)
        else:
            self.requeue(pebble, name, branch, state, 0.0)
        self.settle(pebble)

    def cancel(self, event: PebbleCancelled) -> None:
        pebble = self.engine._pebbles.get(event.pebble_id)
        if pebble is None:
            return
        for (name, branch), state in list(pebble.states.items()):
            if state.status is NodeStatus.QUEUED:
                self.actions.append(CancelJob(self._job_id(pebble, name, branch, state)))
            if state.status in OPEN:
                done = evolve(state, status=NodeStatus.DONE, outcome=Outcome.CANCEL,
                               error=event.reason)
                self.put(pebble, name, branch, done)
        self.settle(pebble)

    def retry(self, event: PebbleRetried) -> None:
        """Run every failed node again; forget what ran (or was skipped) after it."""
        pebble = self.engine._pebbles.get(event.pebble_id)
        if pebble is None:
            return
        failed = [(name, branch) for (name, branch), s in pebble.states.items()
                  if s.outcome in FAILURES and not is_instance(name)
                  and len(branch) == self.topo.depth[name]]
        if not failed:
            return
        self.actions.append(PebbleReopened(pebble.id))
        pebble.left.clear()  # joins to come are counted afresh
        for name, branch in failed:
            state = pebble.states.get((name, branch))
            if state is None or state.outcome not in FAILURES:
                continue  # already forgotten: downstream of an earlier failure
            self.forget_downstream(pebble, name, branch)
            again = evolve(state, status=NodeStatus.QUEUED, outcome=None, output=None,
                            error=None, attempts=state.attempts + 1)
            self.requeue(pebble, name, branch, again, 0.0)
        self.settle(pebble)

    def forget_downstream(self, pebble: PebbleState, name: str, branch: Branch) -> None:
        """Drop the states that depend on ``name`` at ``branch``, and its handlers' runs."""
        down = self.engine.descendants(name)
        for key in list(pebble.states):
            other, where = key
            base, instance = base_name(other), handler_instance(other)
            handled = instance.failed if instance is not None else None
            related = where[: len(branch)] == branch or branch[: len(where)] == where
            if related and (base in down or (handled and (handled in down or handled == name))):
                self.remove(pebble, other, where)
        for merge, split in self.topo.split_of.items():
            if (merge in down or merge == name) and split not in down:
                self.reopen_split(pebble, split, branch)

    def reopen_split(self, pebble: PebbleState, split: str, branch: Branch) -> None:
        """A join that must happen again: the split's aggregate waits for its branches."""
        for length in range(len(branch), -1, -1):
            agg = pebble.states.get((split, branch[:length]))
            if agg is not None and length < self.topo.depth[split]:
                if agg.status is NodeStatus.DONE:
                    self.put(pebble, split, branch[:length],
                             evolve(agg, status=NodeStatus.SPLIT, outcome=None))
                return

    def remove(self, pebble: PebbleState, name: str, branch: Branch) -> None:
        pebble.remove(name, branch, self.engine._is_main(name))
        self.actions.append(NodeRemoved(pebble.id, name, branch))

    # ------------------------------------------------------------------ state

    def put(self, pebble: PebbleState, name: str, branch: Branch, state: NodeState) -> None:
        pebble.put(name, branch, state, self.engine._is_main(name))
        self.actions.append(NodeChanged(pebble.id, name, branch, state))

    def job_target(
        self, jid: str, job: JobSpec | None = None
    ) -> tuple[PebbleState, str, Branch, NodeState] | None:
        """The pebble, node, branch and state ``jid`` is the current attempt of, or None.

        ``job`` (that id's spec) spares reading the parts out of the id.
        """
        if job is not None and job.id == jid:
            pebble_id, name, branch, attempt = job.pebble_id, job.node, job.branch, job.attempt
        else:
            where, _, number = jid.rpartition("#")
            parts = where.split("/")
            pebble_id, name, attempt = int(parts[0]), parts[1], int(number)
            branch = tuple(int(i) for i in parts[2].split(".")) if len(parts) > 2 else ()
        pebble = self.engine._pebbles.get(pebble_id)
        if pebble is None:
            return None
        state = pebble.states.get((name, branch))
        if state is None or state.status is not NodeStatus.QUEUED:
            return None
        if attempt != state.attempts + state.lost:
            return None
        return pebble, name, branch, state

    def _job_id(self, pebble: PebbleState, name: str, branch: Branch, state: NodeState) -> str:
        return job_id(pebble.id, name, branch, state.attempts + state.lost)

    # ------------------------------------------------------------------ finishing

    def finish(
        self,
        pebble: PebbleState,
        name: str,
        branch: Branch,
        outcome: Outcome,
        *,
        output: Any = None,
        error: str | None = None,
        stats: Mapping[str, Any] | None = None,
        base: NodeState | None = None,
    ) -> None:
        """Give a node instance its outcome and move the pebble on from there."""
        state = evolve(
            base or pebble.states.get((name, branch)) or NodeState(),
            status=NodeStatus.DONE, outcome=outcome, output=output, error=error,
            stats=stats if stats is not None else (base.stats if base else {}),
        )
        self.put(pebble, name, branch, state)
        if is_instance(name):
            return
        node = self.graph.nodes[name]
        if outcome in (Outcome.ERROR, Outcome.TIMEOUT):
            self.run_globals(pebble, name, branch)
        per_item = len(branch) == self.topo.depth[name] and bool(branch)
        if node.merge and name in self.topo.split_of and per_item:
            self.try_join(pebble, name, branch[:-1])
            return
        if node.split_on and name not in self.topo.merged_splits and per_item:
            self.try_close_split(pebble, name, branch[:-1])
        self.offer_children(pebble, name, branch)

    def offer_children(self, pebble: PebbleState, name: str, branch: Branch) -> None:
        for child in self.graph.children_of(name):
            node = self.graph.nodes[child]
            if node.is_global:
                continue
            at = self.topo.depth[child] - (1 if node.split_on else 0)
            if at == len(branch):
                self.try_resolve(pebble, child, branch)
            elif at > len(branch):
                for cname, cbranch in list(pebble.states):
                    if cname == child and cbranch[: len(branch)] == branch:
                        self.try_resolve(pebble, child, cbranch)

    def run_globals(self, pebble: PebbleState, failed: str, branch: Branch) -> None:
        """Start every global handler once for a node that ended error or timeout."""
        outcome = pebble.states[(failed, branch)].outcome
        for gname in self.topo.globals:
            node = self.graph.nodes[gname]
            instance = HandlerInstance(gname, failed).name
            if (instance, branch) in pebble.states or outcome is None:
                continue
            self.start(pebble, node, instance, branch, outcome, failed)

    # ------------------------------------------------------------------ resolving

    def parent_outcome(self, pebble: PebbleState, parent: str, branch: Branch) -> Outcome | None:
        if parent == ENTRY:
            return Outcome.SUCCESS
        state = pebble.states.get((parent, branch[: self.topo.out_depth[parent]]))
        return state.outcome if state is not None and state.status is NodeStatus.DONE else None

    def try_resolve(self, pebble: PebbleState, name: str, branch: Branch) -> None:
        state = pebble.states.get((name, branch))
        if state is not None and state.status is not NodeStatus.WAITING:
            return
        node = self.graph.nodes[name]
        parents = [(p, self.parent_outcome(pebble, p, branch)) for p in node.parents]
        found = resolution(node, parents)
        if found is None:
            if state is None:
                self.put(pebble, name, branch, NodeState())
            return
        combined, by = found
        self.start(pebble, node, name, branch, combined, by)

    def start(
        self, pebble: PebbleState, node: Node, name: str, branch: Branch,
        combined: Outcome, by: str | None,
    ) -> None:
        """Apply runOn, runIf and deferred to a resolved node, then queue it."""
        state = NodeState(status=NodeStatus.QUEUED, resolved_by=by, combined=combined)
        pebble.put(name, branch, state, self.engine._is_main(name))
        taken = self._timeout_taken(pebble, node, branch)
        if combined is Outcome.SKIPPED or not runs_on(node, combined, taken):
            self.finish(pebble, name, branch, Outcome.SKIPPED, base=state)
            return
        try:
            allowed = self.run_if(pebble, node, name, branch, by)
        except ExprError as exc:
            self.finish(pebble, name, branch, Outcome.ERROR, error=str(exc), base=state)
            return
        if not allowed:
            self.finish(pebble, name, branch, Outcome.SKIPPED, base=state)
        elif node.deferred:
            self.put(pebble, name, branch, evolve(state, status=NodeStatus.DEFERRED))
        else:
            self.queue(pebble, node, name, branch, state)

    def _timeout_taken(self, pebble: PebbleState, node: Node, branch: Branch) -> bool:
        return any(
            p in self.topo.timeout_takers
            and self.parent_outcome(pebble, p, branch) is Outcome.TIMEOUT
            for p in node.parents
        )

    def run_if(
        self, pebble: PebbleState, node: Node, name: str, branch: Branch, by: str | None
    ) -> bool:
        if node.run_if is None:
            return True
        scope = self.scope(pebble, node, name, branch, by)
        return node.run_if.evaluate(lambda ref: resolve_ref(scope, ref.kind, ref.name))

    def scope(
        self, pebble: PebbleState, node: Node, name: str, branch: Branch, by: str | None
    ) -> Scope:
        instance = handler_instance(name)
        parents = node.parents if instance is None else (instance.failed,)
        order = ((by,) if by else ()) + tuple(p for p in parents if p != by)
        depth = self.topo.depth

        def lookup(target: str) -> NodeState | None:
            return visible_state(pebble, target, branch, depth.get(target, 0))

        return Scope(node, order, lookup, self.engine.options, self.engine.config)

    # ------------------------------------------------------------------ queueing

    def queue(
        self, pebble: PebbleState, node: Node, name: str, branch: Branch, state: NodeState
    ) -> None:
        """Resolve arguments and queue one job, or one per item for ``splitOn``."""
        try:
            spec = self.resolve_job(pebble, node, name, branch, state.resolved_by)
        except ArgumentError as exc:
            self.finish(pebble, name, branch, Outcome.ERROR, error=str(exc), base=state)
            return
        if node.split_on and not is_instance(name):
            self.split(pebble, node, branch, state, spec)
            return
        state = evolve(state, status=NodeStatus.QUEUED, attempts=state.attempts + 1)
        self.put(pebble, name, branch, state)
        self.emit_job(pebble, name, branch, state, spec, 0.0)

    def split(
        self, pebble: PebbleState, node: Node, branch: Branch, state: NodeState,
        spec: dict[str, Any],
    ) -> None:
        items = spec["args"].get(node.split_on)
        if not isinstance(items, list):
            error = (f"node '{node.name}': splitOn argument '{node.split_on}' resolved to "
                     f"{type(items).__name__}, expected a list")
            self.finish(pebble, node.name, branch, Outcome.ERROR, error=error, base=state)
            return
        self.put(pebble, node.name, branch,
                 evolve(state, status=NodeStatus.SPLIT, branches=len(items)))
        if not items:
            self.join_empty(pebble, node.name, branch)
            return
        for index, item in enumerate(items):
            sub = (*branch, index)
            item_state = evolve(state, status=NodeStatus.QUEUED, attempts=1, branches=0)
            self.put(pebble, node.name, sub, item_state)
            args = {**spec["args"], node.split_on: item}
            self.emit_job(pebble, node.name, sub, item_state, {**spec, "args": args}, 0.0)

    def requeue(
        self, pebble: PebbleState, name: str, branch: Branch, state: NodeState, delay: float
    ) -> None:
        node = node_of(self.graph, name)
        try:
            spec = self.resolve_job(pebble, node, name, branch, state.resolved_by)
        except ArgumentError as exc:
            self.finish(pebble, name, branch, Outcome.ERROR, error=str(exc), base=state)
            return
        if node.split_on and not is_instance(name) and branch:
            items = spec["args"].get(node.split_on) or []
            spec["args"][node.split_on] = items[branch[-1]] if branch[-1] < len(items) else None
        self.put(pebble, name, branch, state)
        self.emit_job(pebble, name, branch, state, spec, delay)

    def resolve_job(
        self, pebble: PebbleState, node: Node, name: str, branch: Branch, by: str | None
    ) -> dict[str, Any]:
        scope = self.scope(pebble, node, name, branch, by)
        args: dict[str, Any] = {}
        files: dict[str, Any] = {}
        for arg, spec in node.args.items():
            args[arg] = resolve_arg(scope, arg, spec)
            flags = file_flags(spec, args[arg])
            if flags is not None:
                if spec.type == "file" and spec.source is ArgSource.OUTPUT and spec.ref:
                    host = scope.host_of(spec.ref)  # a plain path is fetched from there
                    if host:
                        flags.setdefault("host", host)
                files[arg] = flags
        ccnode = resolve_arg(scope, "ccnode", node.ccnode) if node.ccnode else None
        workdir = resolve_arg(scope, "workdir", node.workdir) if node.workdir else None
        post = tuple(
            {"output": p.output, "target": resolve_arg(scope, "post.target", p.target),
             "basename": p.basename}
            for p in node.post
        )
        return {"args": args, "files": files or EMPTY, "ccnode": ccnode, "workdir": workdir,
                "post": post}

    def emit_job(
        self, pebble: PebbleState, name: str, branch: Branch, state: NodeState,
        spec: Mapping[str, Any], delay: float,
    ) -> None:
        node = node_of(self.graph, name)
        self.actions.append(QueueJob(JobSpec(
            id=self._job_id(pebble, name, branch, state),
            pebble_id=pebble.id, node=name, branch=branch,
            attempt=state.attempts + state.lost, args=spec["args"],
            priority=node.priority, worker_class=node.needs, files=spec["files"],
            ccnode=None if spec["ccnode"] is None else str(spec["ccnode"]),
            workdir=spec["workdir"], not_before=self.now + delay if delay else 0.0,
            timeout_s=node.timeout_s, post=spec["post"], deferred=node.deferred,
        )))

    # ------------------------------------------------------------------ split / join

    def try_close_split(self, pebble: PebbleState, split: str, branch: Branch) -> None:
        """A split without a merge is done when every item's job is done."""
        agg = pebble.states.get((split, branch))
        if agg is None or agg.status is not NodeStatus.SPLIT:
            return
        if pebble.branches_left(split, branch, agg.branches) == 0:
            items = [pebble.states.get((split, (*branch, i))) for i in range(agg.branches)]
            self.put(pebble, split, branch, _joined(agg, items, None))

    def try_join(self, pebble: PebbleState, merge: str, branch: Branch) -> None:
        split = self.topo.split_of[merge]
        agg = pebble.states.get((split, branch))
        if agg is None or agg.status is not NodeStatus.SPLIT:
            return
        if pebble.branches_left(merge, branch, agg.branches) == 0:
            self.join(pebble, merge, branch, agg.branches)

    def join(self, pebble: PebbleState, merge: str, branch: Branch, count: int) -> None:
        """Turn every region node's branch outputs into lists in index order."""
        region = self.topo.region[merge]
        worst: list[Outcome] = []
        for name in region:
            items = [pebble.states.get((name, (*branch, i))) for i in range(count)]
            base = pebble.states.get((name, branch)) or NodeState()
            joined = _joined(base, items, None)
            worst.extend(s.outcome for s in items if s is not None and s.outcome is not None)
            if name != merge:
                self.put(pebble, name, branch, joined)
        merged = _joined(pebble.states.get((merge, branch)) or NodeState(),
                         [pebble.states.get((merge, (*branch, i))) for i in range(count)],
                         combine(worst))
        self.put(pebble, merge, branch, merged)
        self.offer_children(pebble, merge, branch)

    def join_empty(self, pebble: PebbleState, split: str, branch: Branch) -> None:
        """An empty split list: branch nodes are skipped, the merge sees empty lists."""
        merge = next((m for m, s in self.topo.split_of.items() if s == split), None)
        for name in self.topo.region.get(merge or "", (split,)):
            node = self.graph.nodes[name]
            outcome = Outcome.SUCCESS if name in (split, merge) else Outcome.SKIPPED
            output: dict[str, list[Any]] | None = None
            if outcome is Outcome.SUCCESS:
                output = {key: [] for key in node.outputs}
            base = pebble.states.get((name, branch)) or NodeState()
            self.put(pebble, name, branch, evolve(
                base, status=NodeStatus.DONE, outcome=outcome, output=output))
        if merge is not None:
            self.offer_children(pebble, merge, branch)

    # ------------------------------------------------------------------ completion

    def settle(self, pebble: PebbleState) -> None:
        """Release deferred nodes once the rest is done; finish the pebble when idle."""
        if pebble.open_main == 0 and pebble.open_total > 0:
            for (name, branch), state in list(pebble.states.items()):
                if state.status is NodeStatus.DEFERRED:
                    node = node_of(self.graph, name)
                    self.queue(pebble, node, name, branch, state)
        if pebble.open_total == 0 and pebble.id in self.engine._pebbles:
            del self.engine._pebbles[pebble.id]
            failed = self.unhandled(pebble)
            outcome = PebbleOutcome.FAILED if failed else PebbleOutcome.COMPLETED
            self.actions.append(PebbleDone(pebble.id, outcome, failed))

    def unhandled(self, pebble: PebbleState) -> tuple[str, ...]:
        """Failed node instances that no global or error handler took care of."""
        handlers = [
            (name, branch) for (name, branch), s in pebble.states.items()
            if s.outcome not in (None, Outcome.SKIPPED) and not is_instance(name)
            and self.graph.nodes[name].run_on in (RunOn.ERROR, RunOn.TIMEOUT)
        ]
        failed: list[str] = []
        for (name, branch), state in pebble.states.items():
            if state.outcome not in FAILURES or self._handled(pebble, name, branch, handlers):
                continue
            label = node_label(name, branch)
            if label not in failed:
                failed.append(label)
        return tuple(failed)

    def _handled(
        self, pebble: PebbleState, name: str, branch: Branch,
        handlers: list[tuple[str, Branch]],
    ) -> bool:
        if is_instance(name):
            return False
        for gname in self.topo.globals:
            state = pebble.states.get((HandlerInstance(gname, name).name, branch))
            if state is not None and state.outcome not in (None, Outcome.SKIPPED):
                return True
        for hname, hbranch in handlers:
            related = hbranch[: len(branch)] == branch or branch[: len(hbranch)] == hbranch
            if related and name in self.engine.ancestors(hname):
                return True
        return False


def _as_output(retval: Any) -> Any:
    """A job's return value as the node's output: dicts as they are, else ``value``."""
    if retval is None or isinstance(retval, Mapping):
        return retval
    return {"value": retval}


def _joined(
    base: NodeState, items: list[NodeState | None], outcome: Outcome | None
) -> NodeState:
    """The state of a node after its branches join: outputs become ordered lists."""
    keys: list[str] = []
    for state in items:
        if state is not None and isinstance(state.output, Mapping):
            keys.extend(k for k in state.output if k not in keys)
    output: dict[str, list[Any]] = {
        key: [s.output.get(key) if s is not None and isinstance(s.output, Mapping) else None
              for s in items]
        for key in keys
    }
    outcomes = [s.outcome for s in items if s is not None and s.outcome is not None]
    errors = [s.error for s in items if s is not None and s.error]
    return evolve(
        base, status=NodeStatus.DONE, outcome=outcome or combine(outcomes), output=output,
        error=errors[0] if errors else None, branches=len(items),
        attempts=max((s.attempts for s in items if s is not None), default=base.attempts),
    )
