"""Probe: returns a progress other than 100."""

ccmodule = {
    "description": "Wrong progress",
    "inputs": {},
    "outputs": {},
    "defaults": {},
    "status": {},
}


def process_task(worker, task):
    return 42, {"partial": True}
