"""Probe: returns the worker's environment variable ``name`` and its pid."""

import os

ccmodule = {
    "description": "Read env",
    "inputs": {"name": "variable"},
    "outputs": {},
    "defaults": {},
    "status": {},
}


def process_task(worker, task):
    return 100, {"value": os.environ.get(task["args"]["name"]), "pid": os.getpid()}
