"""Does nothing for ``time`` seconds (default 0) and returns its arguments.

Useful to try out graphs. The wait ends early when the job is cancelled.
"""

import time as _time

ccmodule = {
    "description": "Wait for `time` seconds, then return the arguments it got as outputs",
    "depends": [],
    "provides": [],
    "inputs": {
        "time": "Seconds to wait (default 0); the job ends early when cancelled",
    },
    "outputs": {
        "time": "The time waited, as given",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
    },
    "status": {
        "progress": "Share of the time waited, 0-100",
    },
}

_SLICE_S = 0.5


def process_task(worker, task, cancel_event=None):
    """Wait ``args["time"]`` seconds (in slices, so progress moves), return the args."""
    args = dict(task["args"])
    seconds = float(args.get("time") or 0)
    if seconds > 0:
        _wait(worker, seconds, cancel_event)
    return 100, args


def _wait(worker, seconds, cancel_event):
    deadline = _time.monotonic() + seconds
    while (left := deadline - _time.monotonic()) > 0:
        worker.status["progress"] = int(100 * (1 - left / seconds))
        pause = min(left, _SLICE_S)
        if cancel_event is None:
            _time.sleep(pause)
        elif cancel_event.wait(pause):
            return
    worker.status["progress"] = 100
