"""Probe: a non-idempotent effect.

At its commit point it creates ``effects/<pebble>/<node>`` with ``O_CREAT|O_EXCL``. A
second creation of the same effect is a duplicate effect: it is recorded as a file
under ``duplicates/`` (never swallowed) and reported in the output.
"""

import time
from urllib.parse import quote

from probe_marks import Execution, create_exclusive

ccmodule = {
    "description": "Create an effect exactly once",
    "inputs": {"ledger_dir": "marker folder", "delay": "seconds before the effect"},
    "outputs": {"effect": "the effect file", "duplicate": "true if it existed"},
    "defaults": {},
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    run = Execution(task)
    time.sleep(float(task["args"].get("delay") or 0))
    node = quote(str(task["node"]), safe="")
    effect = run.ledger / "effects" / str(task["pebble_id"]) / node
    duplicate = not create_exclusive(effect, run.record)
    if duplicate:
        create_exclusive(run.ledger / "duplicates" / f"{task['pebble_id']}-{node}-{run.name}",
                         {**run.record, "t_duplicate": time.time()})
    run.finish(duplicate=duplicate)
    return 100, {"effect": str(effect), "duplicate": duplicate}
