"""Probe: returns at once with its args as outputs."""

ccmodule = {
    "description": "Return the args at once",
    "inputs": {},
    "outputs": {},
    "defaults": {},
    "status": {},
}


def process_task(worker, task):
    return 100, dict(task["args"])
