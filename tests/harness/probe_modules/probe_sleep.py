"""Probe: sleeps in slices with a heartbeat status; honours cancel unless told not to."""

import time

from probe_marks import Execution

ccmodule = {
    "description": "Sleep for a while",
    "inputs": {
        "ledger_dir": "marker folder",
        "seconds": "how long to sleep",
        "ignore_cancel": "keep sleeping when cancelled",
    },
    "outputs": {"slept": "seconds slept"},
    "defaults": {},
    "status": {"heartbeat": "slice counter"},
}


def process_task(worker, task, cancel_event=None):
    run = Execution(task)
    args = task["args"]
    started = time.monotonic()
    deadline = started + float(args.get("seconds", 1))
    honour = not args.get("ignore_cancel")
    beat = 0
    while time.monotonic() < deadline:
        if honour and cancel_event is not None and cancel_event.is_set():
            return 100, {"slept": time.monotonic() - started}
        beat += 1
        worker.status["heartbeat"] = beat
        time.sleep(0.02)
    run.finish()
    return 100, {"slept": time.monotonic() - started}
