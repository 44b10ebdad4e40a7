"""Prints, and runs a child process that writes to its stdout."""

import subprocess
import sys

ccmodule = {"description": "Talk", "inputs": {}, "outputs": {}, "defaults": {}, "status": {}}


def process_task(worker, task):
    print("hello from print")
    print("[fake] status from print")
    subprocess.run([sys.executable, "-c", "print('hello from a child')"], check=True)
    worker.status["stage"] = {"name": "done", "items": [1, 2]}
    return 100, {"said": 3}
