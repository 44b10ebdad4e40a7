"""Probe: publishes status values and log lines, then waits to be told to finish."""

import os
import time

ccmodule = {
    "description": "Status and log",
    "inputs": {"gate": "file that ends the job"},
    "outputs": {},
    "defaults": {},
    "status": {"progress": "0..100"},
}


def process_task(worker, task, cancel_event):
    worker.status["progress"] = 10
    worker.log.info("hello from %s", task["node"])
    worker.log.warning("careful")
    gate = task["args"]["gate"]
    while not os.path.exists(gate) and not cancel_event.is_set():
        time.sleep(0.01)
    worker.status["progress"] = 100
    return 100, {"job": os.environ.get("CRYOFLOW_JOB_ID")}
