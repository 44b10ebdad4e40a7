"""Probe: writes N MB to stdout."""

import os
import sys

ccmodule = {
    "description": "Flood stdout",
    "inputs": {"mb": "megabytes"},
    "outputs": {},
    "defaults": {},
    "status": {},
}


def process_task(worker, task):
    line = b"x" * 1023 + b"\n"
    block = line * 1024
    for _ in range(int(task["args"].get("mb", 1))):
        os.write(1, block)
    print("python-level line")
    sys.stderr.write("to stderr\n")
    return 100, {}
