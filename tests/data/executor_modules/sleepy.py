"""Sleeps in slices with a heartbeat; honours cancel unless told not to; may write a marker."""

import os
import time

ccmodule = {
    "description": "Sleep with a heartbeat",
    "inputs": {"seconds": "how long", "marker": "file written at start",
               "ignore_cancel": "keep sleeping when cancelled"},
    "outputs": {"slept": "seconds slept"},
    "defaults": {},
    "status": {"heartbeat": "slice counter"},
}


def process_task(worker, task, cancel_event):
    args = task["args"]
    if args.get("marker"):
        with open(args["marker"], "w") as marker:
            marker.write(str(os.getpid()))
    started = time.monotonic()
    deadline = started + float(args.get("seconds", 1))
    beat = 0
    while time.monotonic() < deadline:
        if cancel_event.is_set() and not args.get("ignore_cancel"):
            break
        beat += 1
        worker.status["heartbeat"] = beat
        time.sleep(0.05)
    return 100, {"slept": round(time.monotonic() - started, 3)}
