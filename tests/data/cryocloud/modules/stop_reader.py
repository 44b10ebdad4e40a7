"""Runs until stopped, reading the stop events CryoCloud modules read."""

import time

from CryoCore import API

ccmodule = {
    "description": "Work until told to stop",
    "depends": [],
    "provides": [],
    "inputs": {"seconds": "Longest it runs"},
    "outputs": {},
    "defaults": {"priority": 10, "runOn": "success"},
}


def process_task(self, task):
    deadline = time.time() + float(task["args"].get("seconds", 30))
    progress = 0
    while not self._stop_event.is_set() and time.time() < deadline:
        if API.api_stop_event.is_set():
            self.log.warning("api_stop_event seen")
            break
        progress = min(99, progress + 1)
        self.status["progress"] = progress
        time.sleep(0.05)
    self.log.info("stopped at %s" % progress)
    return progress, None
