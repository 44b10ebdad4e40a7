"""Probe for loop: doubles ``x``; fails on ``x == "fail"``; can cancel its own job."""

ccmodule = {
    "description": "Double x",
    "inputs": {"x": "a number"},
    "outputs": {"double": "2x", "x": "x"},
    "defaults": {},
    "status": {},
}


def process_task(worker, task, cancel_event):
    x = task["args"]["x"]
    if x == "fail":
        return 0, {}
    if x == "cancel":
        cancel_event.set()
        return 100, {}
    out = {"double": 2 * x, "x": x}
    if x == 2:
        out["extra"] = "only two"
    return 100, out
