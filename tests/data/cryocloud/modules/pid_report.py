"""Says which process ran it."""

import os

ccmodule = {
    "description": "Report the process id",
    "depends": [],
    "provides": [],
    "inputs": {},
    "outputs": {"pid": "Process id"},
    "defaults": {"runOn": "success"},
}


def process_task(self, task):
    return 100, {"pid": os.getpid()}
