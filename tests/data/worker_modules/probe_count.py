"""Probe: counts its calls in this process, so a test can see the module loaded once."""

import os

ccmodule = {
    "description": "Count calls",
    "inputs": {},
    "outputs": {"calls": "n"},
    "defaults": {},
    "status": {},
}

CALLS = []


def process_task(worker, task):
    CALLS.append(1)
    return 100, {"calls": len(CALLS), "cwd": os.getcwd(), "args": task["args"]}
