"""The netwatcher's ``/status/<id>`` answer, built from a stored pebble (pure).

The shape follows CryoCloud's order status, which its microservice clients read:
``pebbleid``, ``progress`` per node, ``retval`` (the output of the node that finished
last), ``retval_full`` (every node's output by node name), and ``completed`` — present,
and true, only once the pebble is done, because CryoCloud's clients test
``"completed" in status``. ``state`` and ``outcome`` say the rest plainly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def status_of(pebble: Mapping[str, Any], order: Sequence[str], now: float) -> dict[str, Any]:
    """The status of a pebble as read by ``Queries.pebble`` (with ``nodes``).

    ``order`` lists the graph's node names; among nodes without a finish time the later
    one in ``order`` counts as the last.
    """
    nodes: Mapping[str, Mapping[str, Any]] = pebble.get("nodes") or {}
    status: dict[str, Any] = {
        "id": pebble["id"],
        "pebbleid": pebble["id"],
        "state": pebble["state"],
        "outcome": pebble["outcome"],
        "failed_nodes": list(pebble.get("failed_nodes") or []),
        "progress": {name: _progress(branches) for name, branches in nodes.items()},
        "retval_full": _outputs(nodes),
        "retval": _last_output(nodes, order),
        "ts": now,
    }
    if pebble["state"] == "done":
        status["completed"] = True
    return status


def _progress(branches: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One node: its status and outcome, with per-branch counts for a split node."""
    main = branches.get("") or next(iter(branches.values()))
    progress = {"status": main.get("status"), "outcome": main.get("outcome")}
    if main.get("error"):
        progress["error"] = main["error"]
    parts = [state for branch, state in branches.items() if branch]
    if parts:
        progress["branches"] = len(parts)
        progress["branches_done"] = sum(1 for state in parts if state.get("status") == "done")
    return progress


def _output(branches: Mapping[str, Mapping[str, Any]]) -> Any:
    main = branches.get("")
    if main is not None and main.get("output") is not None:
        return main["output"]
    parts = sorted(((_branch_order(b), state.get("output")) for b, state in branches.items() if b),
                   key=lambda pair: pair[0])
    return [output for _, output in parts] or None


def _branch_order(branch: str) -> tuple[int, ...]:
    """``"10"`` after ``"2"``: branch keys are dotted split indexes."""
    return tuple(int(part) for part in branch.split(".") if part.isdigit())


def _outputs(nodes: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    found = {name: _output(branches) for name, branches in nodes.items()}
    return {name: value for name, value in found.items() if value is not None}


def _last_output(nodes: Mapping[str, Mapping[str, Mapping[str, Any]]],
                 order: Sequence[str]) -> Any:
    rank = {name: index for index, name in enumerate(order)}
    best: tuple[float, int] | None = None
    value = None
    for name, branches in nodes.items():
        output = _output(branches)
        main = branches.get("") or {}
        if output is None or main.get("status") != "done":
            continue
        finished = (main.get("stats") or {}).get("finished")
        key = (float(finished) if isinstance(finished, int | float) else 0.0, rank.get(name, -1))
        if best is None or key > best:
            best, value = key, output
    return value
