"""Probe: returns a bare dict (or None with none=true)."""

ccmodule = {"description": "Bare dict", "inputs": {}, "outputs": {}, "defaults": {}, "status": {}}


def process_task(worker, task):
    if task["args"].get("none"):
        return None
    return {"answer": 42}
