"""Probe: allocates N MB and keeps it for the life of the worker process."""

ccmodule = {
    "description": "Allocate memory",
    "inputs": {"mb": "megabytes"},
    "outputs": {},
    "defaults": {},
    "status": {},
}

_kept = []


def process_task(worker, task):
    _kept.append(bytearray(int(task["args"].get("mb", 10)) * 2**20))
    return 100, {"held_mb": sum(len(b) for b in _kept) // 2**20}
