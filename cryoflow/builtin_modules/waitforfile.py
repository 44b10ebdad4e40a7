"""Waits until a local file exists and has stopped changing."""

import os
import time

from cryoflow.workers.args import local_path

ccmodule = {
    "description": "Wait until a file exists and its size and mtime stay unchanged for stable_s",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "The file to wait for (a path or file:// URL)",
        "stable_s": "Seconds the size and mtime must stay the same (default 2)",
        "timeout_s": "Give up after this many seconds (default: wait until cancelled)",
        "poll_s": "Seconds between checks (default 0.5, at most stable_s)",
    },
    "outputs": {
        "src": "The file, once stable",
        "size": "Its size in bytes",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
        "type": "admin",
    },
    "status": {
        "state": "waiting, settling or stable",
    },
}


def process_task(worker, task, cancel_event=None):
    """Wait for ``src`` to settle; a timeout is an error, a cancel ends the wait."""
    args = task["args"]
    if not args.get("src"):
        raise ValueError("waitforfile needs src")
    path = local_path(str(args["src"]))
    stable_s = float(args.get("stable_s", 2))
    timeout_s = args.get("timeout_s")
    poll_s = min(float(args.get("poll_s", 0.5)), stable_s) or 0.05
    wait = cancel_event.wait if cancel_event is not None else _sleep_false
    size = wait_until_stable(
        path,
        stable_s=stable_s,
        timeout_s=float(timeout_s) if timeout_s is not None else None,
        poll=lambda: wait(poll_s),
        report=lambda state: worker.status.__setitem__("state", state),
    )
    return 100, {"src": path, "size": size}


def _sleep_false(seconds):
    time.sleep(seconds)
    return False


def wait_until_stable(path, *, stable_s, timeout_s, poll, report, stat=os.stat, now=time.monotonic):
    """Return the size of ``path`` once (size, mtime) held still for ``stable_s``.

    ``poll()`` waits one interval and returns True when the wait should stop (a
    cancel); ``stat`` and ``now`` are the file and clock probes. Returns None when
    cancelled; raises TimeoutError after ``timeout_s``.
    """
    start = now()
    last, since = (), start  # () is never a probe result, so the first probe reports
    while True:
        seen = _probe(path, stat)
        if seen != last:
            last, since = seen, now()
            report("waiting" if seen is None else "settling")
        elif seen is not None and now() - since >= stable_s:
            report("stable")
            return seen[0]
        if timeout_s is not None and now() - start >= timeout_s:
            raise TimeoutError(f"{path} did not become stable within {timeout_s:g}s")
        if poll():
            return None


def _probe(path, stat):
    try:
        info = stat(path)
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns
