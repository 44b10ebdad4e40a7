"""Stand-in for the example's fakework: pretend to work on a file for a while."""

import os
import time

ccmodule = {
    "description": "Pretend to work on a file (test stand-in)",
    "depends": [],
    "provides": [],
    "inputs": {"src": "File", "time": "Seconds to work"},
    "outputs": {"product": "Name of the file worked on"},
    "defaults": {"priority": 50, "runOn": "success"},
}


def process_task(self, task, cancel_event):
    seconds = float(task["args"].get("time", 0)) / 10.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not cancel_event.is_set():
        self.status["progress"].inc(10)
        time.sleep(seconds / 10 if seconds else 0)
    return 100, {"product": os.path.basename(task["args"]["src"])}
