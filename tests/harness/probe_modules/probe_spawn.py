"""Probe: forks ``sh -c 'sleep 600 & sleep 600'`` and waits for it (it never ends).

With ``trap`` the job ignores SIGTERM, and so does the shell: only SIGKILL stops them.
"""

import signal
import subprocess

from probe_marks import Execution

ccmodule = {
    "description": "Spawn grandchildren that outlive any timeout",
    "inputs": {"ledger_dir": "marker folder", "trap": "ignore SIGTERM"},
    "outputs": {"returncode": "the shell's exit status"},
    "defaults": {},
    "status": {"children": "pid of the shell"},
}


def process_task(worker, task, cancel_event=None):
    run = Execution(task)
    script = "sleep 600 & sleep 600"
    if task["args"].get("trap"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        script = "trap '' TERM; sleep 600 & sleep 600"
    shell = subprocess.Popen(["sh", "-c", script])
    worker.status["children"] = shell.pid
    code = shell.wait()
    run.finish(returncode=code)
    return 100, {"returncode": code}
