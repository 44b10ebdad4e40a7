"""A sibling module imported by cryocloud_wind, as CryoCloud modules import theirs."""


def process_task(worker, task, cancel_event=None):
    worker.status["state"] = "helper ran"
    return 100, {"helper": task["args"]["fullPath"]}
