"""Pure functions that build the API's JSON shapes from the graph and store rows.

Nothing here does I/O: every function takes plain values (the graph, rows from
:class:`~cryoflow.store.reader.Queries`, counts) and returns JSON-friendly dicts.
Node statuses use the Cloudmesh flow vocabulary ``defined``, ``pending``,
``running``, ``finished`` and ``error``, plus ``skipped`` for a node no branch ran.
"""

from __future__ import annotations

import json as _json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryoflow.graph.instances import base_name
from cryoflow.graph.model import ENTRY, Graph, Node

OPEN_LABELS = ("waiting", "queued", "deferred", "split")
FAILED_LABELS = ("error", "timeout", "cancel", "lost")
SECRET_KEY = re.compile(r"pass(word)?|secret|token|credential|api_?key|private", re.I)
COLOR = re.compile(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]{1,24}")
SHAPES = ("box", "circle", "ellipse", "diamond")
MAX_VALUE_CHARS = 200
JOB_ID = re.compile(r"([0-9]+)/([^/#]+)(?:/([0-9.]+))?#([0-9]+)")


# ----------------------------------------------------------------------------- statuses


def status_of_counts(counts: Mapping[str, int]) -> str:
    """One node's status over all pebbles: running > pending > error > finished > skipped."""
    if counts.get("running"):
        return "running"
    if any(counts.get(label) for label in OPEN_LABELS):
        return "pending"
    if any(counts.get(label) for label in FAILED_LABELS):
        return "error"
    if counts.get("success"):
        return "finished"
    return "skipped" if counts.get("skipped") else "defined"


def status_of_branches(branches: Mapping[str, Mapping[str, Any]], *, running: bool) -> str:
    """One node's status within one pebble, from its branch states."""
    counts: dict[str, int] = {}
    for state in branches.values():
        label = state["outcome"] if state["status"] == "done" else state["status"]
        counts[str(label)] = counts.get(str(label), 0) + 1
    if running:
        counts["running"] = 1
    return status_of_counts(counts)


def merge_counts(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Counts keyed by node base name (global handler instances ``H@N`` fold into ``H``)."""
    merged: dict[str, dict[str, int]] = {}
    for name, row in counts.items():
        target = merged.setdefault(base_name(name), {})
        for label, n in row.items():
            target[label] = target.get(label, 0) + n
    return merged


# ----------------------------------------------------------------------------- the graph


def dependencies(node: Node) -> list[str]:
    """The node's parents, without the implicit ``entry``."""
    return [p for p in node.parents if p != ENTRY]


def layers(graph: Graph) -> dict[str, tuple[int, int]]:
    """``{name: (layer, order)}``: inputs on layer 0, each node below its deepest parent.

    Within a layer nodes are ordered by the mean order of their parents (definition
    order breaks ties), which keeps most edges from crossing.
    """
    layer: dict[str, int] = {}
    for node in graph:  # nodes come in topological order
        parents = [layer[p] for p in dependencies(node) if p in layer]
        layer[node.name] = 1 + max(parents) if parents else 0
    placed: dict[str, tuple[int, int]] = {}
    for depth in sorted(set(layer.values())):
        names = [n.name for n in graph if layer[n.name] == depth]
        names.sort(key=lambda name: _barycenter(graph.nodes[name], placed))
        for order, name in enumerate(names):
            placed[name] = (depth, order)
    return placed


def _barycenter(node: Node, placed: Mapping[str, tuple[int, int]]) -> float:
    orders = [placed[p][1] for p in dependencies(node) if p in placed]
    return sum(orders) / len(orders) if orders else -1.0


def display_of(output: Any) -> dict[str, Any] | None:
    """The ``color``, ``shape``, ``label`` and ``value`` an output dict asks the view for.

    Colours must be a name or ``#hex``; shapes one of :data:`SHAPES`; the label is
    shortened text; the value is any JSON value as itself, or shortened text when its
    JSON is longer than :data:`MAX_VALUE_CHARS`. Anything else is left out.
    """
    if not isinstance(output, Mapping):
        return None
    shown: dict[str, Any] = {}
    color = output.get("color")
    if isinstance(color, str) and COLOR.fullmatch(color):
        shown["color"] = color
    if output.get("shape") in SHAPES:
        shown["shape"] = output["shape"]
    if output.get("label") is not None:
        shown["label"] = short_text(output["label"])
    if output.get("value") is not None:
        shown["value"] = short_value(output["value"])
    return shown or None


def short_value(value: Any) -> Any:
    """A JSON value as itself when its JSON fits :data:`MAX_VALUE_CHARS`, else short text."""
    if isinstance(value, str):
        return short_text(value)
    text = _json_text(value)
    if len(text) > MAX_VALUE_CHARS:
        return short_text(text)
    return _json.loads(text) if _is_json(value) else text


def short_text(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` as text of at most ``limit`` characters."""
    text = value if isinstance(value, str) else _json_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_json(value: Any) -> bool:
    try:
        _json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _json_text(value: Any) -> str:
    try:
        return _json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def node_view(node: Node, place: tuple[int, int], counts: Mapping[str, int],
              last_output: Any, held: str | None = None) -> dict[str, Any]:
    """One node of the workflow view; ``held``: the restriction holding its queued jobs."""
    return {
        "name": node.name,
        "module": node.module,
        "dependencies": dependencies(node),
        "input": node.is_input,
        "global": node.is_global,
        "worker_class": node.needs.value,
        "priority": node.priority,
        "layer": place[0],
        "order": place[1],
        "counts": dict(counts),
        "status": status_of_counts(counts),
        "display": display_of(last_output),
        "held": held,
    }


def edges_view(graph: Graph) -> list[dict[str, Any]]:
    """Every edge between two nodes, with the child's ``run_on``."""
    return [{"from": parent, "to": node.name, "run_on": node.run_on.value}
            for node in graph for parent in dependencies(node)]


def options_view(graph: Graph, values: Mapping[str, Any]) -> dict[str, Any]:
    """The graph's options with the values of this run (secret-looking ones hidden)."""
    shown: dict[str, Any] = {}
    for name, spec in graph.options.items():
        value = values.get(name, spec.default)
        shown[name] = {"type": spec.type, "help": spec.help, "required": spec.required,
                       "value": "***" if SECRET_KEY.search(name) else value}
    return shown


def workflow_view(graph: Graph, *, counts: Mapping[str, Mapping[str, int]],
                  options: Mapping[str, Any], last_outputs: Mapping[str, Any],
                  pebbles: Mapping[str, int],
                  held: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The workflow: nodes with layout and counts, edges, options, pebble counts."""
    held = held or {}
    merged = merge_counts(counts)
    places = layers(graph)
    return {
        "name": graph.name,
        "description": graph.description,
        "nodes": [node_view(n, places[n.name], merged.get(n.name, {}), last_outputs.get(n.name),
                            held.get(n.name)) for n in graph],
        "edges": edges_view(graph),
        "options": options_view(graph, options),
        "pebbles": dict(pebbles),
    }


# --------------------------------------------------------------------- Cloudmesh shapes


def definition_view(graph: Graph) -> list[dict[str, Any]]:
    """The Cloudmesh *definition* collection: every node ``defined``."""
    return [_flow_object(graph, node, "flow", status="defined") for node in graph]


def active_view(graph: Graph, counts: Mapping[str, Mapping[str, int]],
                last_outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Cloudmesh *active* collection over all pebbles of the run."""
    merged = merge_counts(counts)
    status = {n.name: status_of_counts(merged.get(n.name, {})) for n in graph}
    return [_active_object(graph, node, status, last_outputs.get(node.name)) for node in graph]


def pebble_active_view(graph: Graph, pebble: Mapping[str, Any],
                       jobs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Cloudmesh *active* collection for one pebble."""
    status = pebble_statuses(graph, pebble, jobs)
    results = {name: node_output(graph, name, pebble["nodes"].get(name, {})) for name in status}
    return [_active_object(graph, node, status, results[node.name]) for node in graph]


def _flow_object(graph: Graph, node: Node, suffix: str, *, status: str) -> dict[str, Any]:
    return {
        "name": node.name,
        "dependencies": dependencies(node),
        "workflow": graph.name,
        "module": node.module,
        "kind": "flow",
        "status": status,
        "cm": {"kind": "flow", "name": node.name, "collection": f"{graph.name}-{suffix}"},
    }


def _active_object(graph: Graph, node: Node, status: Mapping[str, str],
                   result: Any) -> dict[str, Any]:
    view = _flow_object(graph, node, "flow-active", status=status[node.name])
    view["dependencies"] = [p for p in dependencies(node)
                            if status.get(p) not in ("finished", "skipped")]
    view["result"] = result
    return view


# ----------------------------------------------------------------------------- pebbles


def pebble_statuses(graph: Graph, pebble: Mapping[str, Any],
                    jobs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each node's status within one pebble (unreached nodes: pending or skipped)."""
    running = {base_name(j["node"]) for j in jobs if j["state"] == "running"}
    unreached = "pending" if pebble["state"] == "active" else "skipped"
    by_node = _branches_by_base(pebble["nodes"])
    return {n.name: status_of_branches(by_node[n.name], running=n.name in running)
            if n.name in by_node else unreached for n in graph}


def _branches_by_base(nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for name, branches in nodes.items():
        for branch, state in branches.items():
            merged.setdefault(base_name(name), {})[f"{name}/{branch}"] = state
    return merged


def node_output(graph: Graph, name: str, branches: Mapping[str, Mapping[str, Any]]) -> Any:
    """A node's output in one pebble; a split node's is the list of its branch outputs."""
    node = graph.nodes.get(name)
    if node is not None and node.split_on and "" in branches:
        items = sorted((k for k in branches if k and "." not in k), key=int)
        return [branches[k]["output"] for k in items]
    state = branches.get("") or next(iter(branches.values()), None)
    return None if state is None else state["output"]


def pebble_summary(pebble: Mapping[str, Any]) -> dict[str, Any]:
    """A pebble row as the list shows it."""
    keys = ("id", "input_node", "item", "state", "outcome", "failed_nodes", "created", "finished")
    return {key: pebble.get(key) for key in keys}


def pebble_view(graph: Graph, pebble: Mapping[str, Any],
                jobs: Sequence[Mapping[str, Any]], progress: Mapping[str, Any]) -> dict[str, Any]:
    """One pebble: its row, each node's status and branch states, and its jobs."""
    status = pebble_statuses(graph, pebble, jobs)
    nodes = []
    order = {name: i for i, name in enumerate(graph.nodes)}
    for name, branches in sorted(pebble["nodes"].items(),
                                 key=lambda kv: (order.get(base_name(kv[0]), 1 << 30),
                                                 kv[0])):
        nodes.append({"name": name, "status": status.get(base_name(name), "pending"),
                      "output": node_output(graph, name, branches),
                      "branches": [dict(state, branch=key) for key, state in branches.items()]})
    view = pebble_summary(pebble)
    view.update(status=status, nodes=nodes, jobs=[job_summary(j, progress) for j in jobs])
    return view


# ------------------------------------------------------------------------------- jobs


def parse_job_id(job_id: str) -> tuple[int, str, str, int] | None:
    """``"12/Wind/3#2"`` → ``(12, "Wind", "3", 2)``; None when it is not a job id."""
    found = JOB_ID.fullmatch(job_id)
    if found is None:
        return None
    pebble, node, branch, attempt = found.groups()
    return int(pebble), node, branch or "", int(attempt)


def duration(job: Mapping[str, Any]) -> float | None:
    """Seconds from start to end of a finished job, else None."""
    started, finished = job.get("started"), job.get("finished")
    return finished - started if started is not None and finished is not None else None


def job_summary(job: Mapping[str, Any], progress: Mapping[str, Any],
                held: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A job row as lists show it: no arguments, with duration, progress and, for a
    queued job, the restriction that holds it (``held``)."""
    keys = ("id", "pebble_id", "node", "branch", "attempt", "priority", "worker_class",
            "state", "created", "started", "finished", "worker", "host", "outcome", "error")
    view = {key: job.get(key) for key in keys}
    view["duration"] = duration(job)
    view["progress"] = progress.get(job["id"]) if job.get("state") == "running" else None
    queued = job.get("state") == "queued"
    view["held"] = (held or {}).get(base_name(job["node"])) if queued else None
    return view


def job_view(job: Mapping[str, Any], progress: Mapping[str, Any],
             held: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One job with its (redacted) arguments, return value and stats."""
    view = job_summary(job, progress, held)
    spec = job.get("spec") or {}
    view["args"] = redact(spec.get("args", {}))
    view["retval"] = job.get("retval")
    view["stats"] = job.get("stats") or {}
    view["timeout_s"] = spec.get("timeout_s")
    return view


def redact(value: Any) -> Any:
    """``value`` with every secret-looking key's value replaced by ``***``."""
    if isinstance(value, Mapping):
        return {k: "***" if SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


# ----------------------------------------------------------------------------- workers


def workers_view(capacity: Mapping[str, int], free: Mapping[str, int],
                 running: Iterable[Mapping[str, Any]],
                 progress: Mapping[str, Any]) -> dict[str, Any]:
    """Slots per worker class and what each busy worker runs."""
    classes = []
    for name, total in sorted(capacity.items()):
        busy = max(0, total - free.get(name, 0))
        classes.append({"class": name, "capacity": total, "busy": busy, "free": total - busy,
                        "utilisation": busy / total if total else 0.0})
    workers = [{"worker": j.get("worker"), "host": j.get("host"), "class": j["worker_class"],
                "job_id": j["id"], "node": j["node"], "pebble_id": j["pebble_id"],
                "started": j.get("started"), "progress": progress.get(j["id"])}
               for j in running]
    return {"classes": classes, "workers": workers}


# ------------------------------------------------------------------------------ paging


def page(items: list[Any], limit: int, key: str) -> dict[str, Any]:
    """``{"items", "next"}``: ``next`` is the cursor of the following page, or None."""
    more = len(items) >= limit and bool(items)
    return {"items": items, "next": items[-1][key] if more else None}


def dumps(value: Any) -> str:
    """JSON for responses: non-finite numbers as null, other non-JSON values as text."""
    try:
        return _json.dumps(value, default=str, allow_nan=False)
    except ValueError:
        return _json.dumps(_finite(value), default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
