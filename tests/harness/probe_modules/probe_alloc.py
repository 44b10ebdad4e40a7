"""Probe: allocates ``mb`` megabytes and touches every page.

``limit_mb`` first caps this worker process's address space (RLIMIT_AS), as a job
memory limit would, so that an allocation beyond it fails. ``oom`` kills the worker
with SIGKILL once the memory is held, as the kernel's OOM killer would.
"""

import os
import resource
import signal

from probe_marks import Execution

ccmodule = {
    "description": "Allocate memory",
    "inputs": {
        "ledger_dir": "marker folder",
        "mb": "megabytes to allocate",
        "limit_mb": "address-space limit of the worker process",
        "oom": "die by SIGKILL once allocated",
    },
    "outputs": {"mb": "megabytes held"},
    "defaults": {},
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    run = Execution(task)
    args = task["args"]
    if args.get("limit_mb"):
        limit = int(args["limit_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    held = bytearray(int(args.get("mb", 10)) * 2**20)
    for offset in range(0, len(held), 4096):
        held[offset] = 1
    if args.get("oom"):
        os.kill(os.getpid(), signal.SIGKILL)
    run.finish()
    return 100, {"mb": len(held) // 2**20}
