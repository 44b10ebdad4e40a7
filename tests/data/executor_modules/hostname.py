"""Returns where it ran."""

ccmodule = {"description": "Where am I", "inputs": {}, "outputs": {"host": "worker host"},
            "defaults": {}, "status": {}}


def process_task(worker, task):
    return 100, {"host": worker.host}
