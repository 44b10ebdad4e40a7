"""Waits until the file named by ``gate`` exists (or the job is cancelled), then echoes."""

import os
import time

ccmodule = {
    "description": "Holds a job until a file appears, then returns its arguments",
    "inputs": {"gate": "a path to wait for", "x": "any value", "fail": "raise when true"},
    "outputs": {"x": "the value given"},
}


def process_task(worker, task, cancel_event):
    args = task["args"]
    worker.status["progress"] = 10
    deadline = time.monotonic() + 60
    gate = args.get("gate")
    while gate and not os.path.exists(gate) and not cancel_event.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.02)
    worker.status["progress"] = 90
    worker.log.info("gate passed for %s", args.get("x"))
    if args.get("fail"):
        worker.log.warning("failing on %s as asked", args.get("x"))
        raise RuntimeError(f"asked to fail on {args.get('x')}")
    return 100, {k: v for k, v in args.items() if k != "gate"}
