"""Allocates memory until it is killed (or holds ``megabytes``)."""

ccmodule = {"description": "Eat memory", "inputs": {"megabytes": "how much"}, "outputs": {},
            "defaults": {}, "status": {}}


def process_task(worker, task):
    chunks = []
    for _ in range(int(task["args"].get("megabytes", 1024))):
        chunks.append(bytearray(1 << 20))
    return 100, {"held": len(chunks)}
