"""Probe: sleeps in slices, publishing a heartbeat; honours cancel; may write a marker."""

import os
import time

ccmodule = {
    "description": "Sleep with a heartbeat",
    "inputs": {"seconds": "how long", "marker": "file written at start", "quiet": "no status"},
    "outputs": {"pid": "the worker pid"},
    "defaults": {},
    "status": {"heartbeat": "slice counter"},
}


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    if args.get("marker"):
        with open(args["marker"], "w") as f:
            f.write(str(os.getpid()))
    deadline = time.monotonic() + float(args.get("seconds", 1))
    beat = 0
    while time.monotonic() < deadline and not (cancel_event and cancel_event.is_set()):
        beat += 1
        if not args.get("quiet"):
            worker.status["heartbeat"] = beat
        time.sleep(0.02)
    return 100, {"pid": os.getpid()}
