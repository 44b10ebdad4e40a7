"""``--report FILE``: the outcome of every pebble as JSON, written on exit."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryoflow.graph.instances import base_name
from cryoflow.graph.model import Graph
from cryoflow.store.reader import Queries


def pebble_report(pebble: Mapping[str, Any], graph: Graph) -> dict[str, Any]:
    """One pebble as the report shows it; a split node's output is the branch outputs."""
    nodes: dict[str, Any] = {}
    for name, branches in pebble["nodes"].items():
        state = branches.get("")
        node = graph.nodes.get(base_name(name))
        if node is not None and node.split_on and state is not None:
            items = sorted((k for k in branches if k and "." not in k), key=int)
            output: Any = [branches[k]["output"] for k in items]
        else:
            state = state or next(iter(branches.values()))
            output = state["output"]
        nodes[name] = {"outcome": state["outcome"], "output": output, "error": state["error"],
                       "attempts": state["attempts"]}
        traceback = (state.get("stats") or {}).get("traceback")
        if traceback:
            nodes[name]["traceback"] = traceback
    return {"id": pebble["id"], "outcome": pebble["outcome"], "input": pebble["item"],
            "nodes": nodes}


def iter_pebbles(store: Queries, page: int = 500) -> Iterator[dict[str, Any]]:
    """Every pebble with its node states, in id order, a page at a time."""
    after = 0
    while True:
        rows = store.pebbles(limit=page, after_id=after)
        if not rows:
            return
        for row in rows:
            full = store.pebble(row["id"])
            if full is not None:
                yield full
        after = rows[-1]["id"]


def build_report(store: Queries, graph: Graph) -> dict[str, Any]:
    pebbles = [pebble_report(p, graph) for p in iter_pebbles(store)]
    failed = any(p["outcome"] == "failed" for p in pebbles)
    active = any(p["outcome"] is None for p in pebbles)
    outcome = "failed" if failed else "unfinished" if active else "completed"
    return {"workflow": graph.name, "outcome": outcome, "pebbles": pebbles}


def write_report(store: Queries, graph: Graph, path: Path) -> None:
    """Write the report atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(build_report(store, graph), indent=2, default=str))
    os.replace(tmp, path)
