"""Submitted function-spec workflows: start one on a head of its own, read it, finish it.

Used by :class:`cryoflow.colony.service.ColonyService`. Each workflow gets the state folder
``STATE/workflows/ID`` and a head whose tasks for external executors go to the shared
:class:`~cryoflow.colony.queue.ColonyQueue`; specs without an ``executortype`` run their
``funcname`` (``package.module:function``) in threads of the head's process.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryoflow.colony.queue import ColonyQueue
from cryoflow.daemon.root import build_executor, close_head, open_head, routed_executor
from cryoflow.daemon.settings import RunSettings
from cryoflow.graph.funcspec import funcspec_graph
from cryoflow.graph.model import ENTRY, Node
from cryoflow.head import Head
from cryoflow.pyapi.records import node_status
from cryoflow.store import Store
from cryoflow.workers.base import Executor

STATES = {"pending": "waiting", "running": "running", "finished": "successful",
          "error": "failed", "skipped": "failed"}
"""Node statuses in ColonyOS's process states."""


@dataclass
class WorkflowRun:
    """One submitted function-spec workflow and the head that runs it."""

    id: str
    head: Head
    store: Store
    pebble_id: int
    submitted: float
    ended: float | None = None
    cancelled: bool = False
    final: dict[str, Any] | None = None
    watcher: asyncio.Task[None] | None = None


async def start_workflow(spec: Any, state_dir: Path, queue: ColonyQueue,
                         local: Callable[[], Executor] | None) -> WorkflowRun:
    """Check ``spec``, open its state folder, start its head and its one pebble."""
    name = spec.get("name") if isinstance(spec, Mapping) else None
    graph = funcspec_graph(spec, source="the submitted workflow", name=name or "workflow")
    workflow_id = secrets.token_hex(16)
    inner = local() if local else build_executor(RunSettings(executor="inline", workers=2))
    head = open_head(graph, state_dir / workflow_id, routed_executor(inner, external=queue))
    try:
        await head.start()
        pebble_id = await head.offer(ENTRY, {})
    except BaseException:
        head.store.close()
        raise
    return WorkflowRun(workflow_id, head, head.store, pebble_id, submitted=time.time())


async def finish_workflow(run: WorkflowRun, queue: ColonyQueue) -> dict[str, Any]:
    """The workflow's last view; then stop its head and close its store."""
    try:
        view = workflow_view(run, queue)
    finally:
        await close_head(run.head)
    return view


def workflow_view(run: WorkflowRun, queue: ColonyQueue) -> dict[str, Any]:
    """The workflow with every process's state, as ``cryoflow get`` prints it."""
    pebble = run.head.store.pebble(run.pebble_id)
    assert pebble is not None, "a submitted workflow's pebble stays in its store"
    running = {j["node"] for j in run.head.store.jobs(pebble_id=run.pebble_id,
                                                      state="running")}
    if pebble["state"] == "active":
        state = "running"
    elif run.cancelled:
        state = "cancelled"
    else:
        state = "successful" if pebble["outcome"] == "completed" else "failed"
    processes = [_process(node, pebble, node.name in running,
                          queue.latest(f"{run.pebble_id}/{node.name}"))
                 for node in run.head.graph]
    return {"workflowid": run.id, "name": run.head.graph.name, "state": state,
            "submissiontime": run.submitted, "starttime": pebble["created"],
            "endtime": pebble["finished"], "statedir": str(run.store.path.parent),
            "processes": processes}


def _process(node: Node, pebble: Mapping[str, Any], running: bool,
             process: Any) -> dict[str, Any]:
    branches = pebble["nodes"].get(node.name) or {}
    state = branches.get("")
    if state is None:
        status = "waiting" if pebble["state"] == "active" else "failed"
    else:
        status = STATES[node_status(state, running).value]
    if status == "running" and process is not None and process.state == "waiting":
        status = "waiting"  # handed over, but no executor has taken it yet
    output = state.get("output") if state else None
    extra = node.extra
    return {
        "nodename": node.name, "processid": process.id if process else None,
        "funcname": extra.get("funcname"), "executortype": extra.get("executortype"),
        "dependencies": [p for p in node.parents if p != ENTRY],
        "args": extra.get("args"), "kwargs": extra.get("kwargs"),
        "priority": node.priority, "state": status,
        "waitingforparents": state is None or state.get("status") == "waiting",
        "output": output.get("result") if isinstance(output, Mapping) else output,
        "errors": [state["error"]] if state and state.get("error") else [],
        "assignedexecutor": process.executor.name if process and process.executor else None,
        "waitingfor": process.note if process else None,
        "maxwaittime": extra.get("maxwaittime"),
        "attributes": process.view()["attributes"] if process else [],
    }
