"""Probe: starts a shell with a background and a foreground child, then waits."""

import signal
import subprocess

ccmodule = {
    "description": "Spawn children",
    "inputs": {"trap": "ignore SIGTERM"},
    "outputs": {},
    "defaults": {},
    "status": {},
}


def process_task(worker, task):
    script = "sleep 600 & sleep 600"
    if task["args"].get("trap"):
        script = "trap '' TERM; sleep 600 & sleep 600"
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker.status["state"] = "spawned"
    subprocess.run(["sh", "-c", script], check=False)
    return 100, {}
