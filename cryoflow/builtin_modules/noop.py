"""Does nothing for ``time`` seconds (default 0) and returns its arguments.

Useful to try out graphs. The wait ends early when the job is cancelled. As in
CryoCloud it runs whatever its parents' outcome (``runOn: always``), and passes
``ignored`` through.
"""

import random
import time as _time

ccmodule = {
    "description": "Wait for `time` seconds, then return the arguments it got as outputs",
    "depends": [],
    "provides": [],
    "inputs": {
        "time": "Seconds to wait (default 0); the job ends early when cancelled",
        "randomize": "Wait a random share of `time` instead (default false)",
        "ignored": "Anything; returned as the output `ignored`",
        "*": "Any other argument is returned as an output of the same name",
    },
    "outputs": {
        "time": "The time waited, as given",
        "ignored": "Whatever came in as `ignored`",
    },
    "defaults": {
        "priority": 10,
        "runOn": "always",
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
    if _truthy(args.get("randomize")):
        seconds *= random.random()  # noqa: S311 - a pause length, not a secret
    if seconds > 0:
        _wait(worker, seconds, cancel_event or getattr(worker, "stop_event", None))
    return 100, args


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


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
