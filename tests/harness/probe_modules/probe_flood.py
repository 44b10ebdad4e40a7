"""Probe: writes ``mb`` megabytes to stdout."""

import os

from probe_marks import Execution

ccmodule = {
    "description": "Flood stdout",
    "inputs": {"ledger_dir": "marker folder", "mb": "megabytes to write"},
    "outputs": {"written": "bytes written"},
    "defaults": {},
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    run = Execution(task)
    block = (b"x" * 1023 + b"\n") * 1024
    written = 0
    for _ in range(int(task["args"].get("mb", 1))):
        written += os.write(1, block)
    run.finish(written=written)
    return 100, {"written": written}
