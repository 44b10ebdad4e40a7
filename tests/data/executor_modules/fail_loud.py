"""Writes to stderr, then fails: with an exception, or by ending its process."""

import os
import sys

ccmodule = {"description": "Fail", "inputs": {"how": "raise or exit"}, "outputs": {},
            "defaults": {}, "status": {}}


def process_task(worker, task):
    print("something went wrong inside", file=sys.stderr, flush=True)
    if task["args"].get("how") == "exit":
        os._exit(3)
    raise ValueError("probe failure")
