"""Graphs that grow while they run (ColonyOS dynamic workflows): the call a job makes.

From a flow function or a module: ``add_child(worker, spec, insert=False)``; over the
executor API: ``POST /api/v1/processes/{id}/children``. What a request may do is
in :mod:`cryoflow.graph.grow`; :func:`cryoflow.daemon.root.grow_head` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryoflow.workers.routing import ADD_CHILD_KEY


def add_child(worker: Any, spec: Mapping[str, Any], insert: bool = False) -> None:
    """From a running job: add ``spec`` as a child of this job's node (see the module)."""
    worker.status[ADD_CHILD_KEY] = {"spec": dict(spec), "insert": bool(insert)}
