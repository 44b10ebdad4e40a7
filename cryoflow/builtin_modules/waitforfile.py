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
        "dir": "With fileList: the folder in which to wait for every file of fileList",
        "fileList": "Names (relative to dir) that must all exist and be stable",
        "stabilize": "The same as stable_s (CryoCloud's name)",
    },
    "outputs": {
        "src": "The file, once stable (a list with fileList)",
        "size": "Its size in bytes (a list with fileList)",
    },
    "defaults": {
        "priority": 0,
        "runOn": "success",
    },
    "status": {
        "state": "waiting, settling or stable",
    },
}


def process_task(worker, task, cancel_event=None):
    """Wait for ``src`` to settle; a timeout is an error, a cancel ends the wait."""
    args = task["args"]
    if args.get("fileList") is not None:
        if not args.get("dir") or not isinstance(args["fileList"], list):
            raise ValueError("waitforfile with fileList needs dir and fileList as a list")
        paths = [os.path.join(local_path(str(args["dir"])), str(n)) for n in args["fileList"]]
    elif args.get("src"):
        paths = [local_path(str(args["src"]))]
    else:
        raise ValueError("waitforfile needs src, or dir and fileList")
    stable_s = float(args.get("stable_s", args.get("stabilize", 2)))
    timeout_s = args.get("timeout_s")
    poll_s = min(float(args.get("poll_s", 0.5)), stable_s) or 0.05
    wait = cancel_event.wait if cancel_event is not None else _sleep_false
    sizes = []
    for path in paths:
        sizes.append(wait_until_stable(
            path,
            stable_s=stable_s,
            timeout_s=float(timeout_s) if timeout_s is not None else None,
            poll=lambda: wait(poll_s),
            report=lambda state: worker.status.__setitem__("state", state),
        ))
    if args.get("fileList") is not None:
        return 100, {"src": paths, "size": sizes}
    return 100, {"src": paths[0], "size": sizes[0]}


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
