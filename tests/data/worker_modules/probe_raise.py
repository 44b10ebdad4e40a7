"""Probe: raises."""

ccmodule = {"description": "Raise", "inputs": {}, "outputs": {}, "defaults": {}, "status": {}}


def _inner(message):
    raise ValueError(message)


def process_task(worker, task):
    _inner(task["args"].get("message", "probe failure"))
