"""Runs IDL (``idl`` on PATH) with the arguments in ``cmd``; a clear error when IDL is
not installed.

IDL's output follows the tool line protocol: ``[key] value`` sets a status value
(``[progress] 40``), ``<level> message`` logs (debug, info, warning, error),
``key=value`` becomes an output, and ``ret=JSON`` (or ``{retval} JSON``) gives all
outputs at once. ``max_time`` limits the run in seconds and ``max_memory`` its
resident memory in bytes; either ends the run with an error that says which.
"""

import os
import threading
import time

import psutil

from cryoflow.compat.tools import report_line, require_tool, run_tool

ccmodule = {
    "description": "Run IDL programs",
    "depends": ["Product"],
    "provides": ["Product"],
    "inputs": {
        "cmd": "Arguments for idl, as a list (e.g. ['-e', \"wind, 'in', 'cfg'\"])",
        "dir": "Folder to run IDL in",
        "env": "Environment variables to add, as a mapping",
        "debug": "Log every line IDL prints (default false)",
        "max_time": "Seconds IDL may run (default unlimited)",
        "max_memory": "Bytes of resident memory IDL may use (default unlimited)",
    },
    "outputs": {
        "status": "ok when IDL exited with 0",
        "result": "Lines IDL logged as its result",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
    },
    "status": {"progress": "Progress 0-100%", "idl": "running, done or why it was stopped"},
}

_KEY_VALUE = "="


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    cmd = args.get("cmd")
    if not isinstance(cmd, list):
        raise ValueError("idl needs cmd as a list of arguments for idl")
    idl = require_tool("idl", "install IDL on this worker, or pin the node to a host that has "
                              "it with ccnode")
    folder = args.get("dir")
    if folder and not os.path.isdir(folder):
        raise NotADirectoryError(f"idl dir {folder!r} is not a folder")
    env = {**os.environ, **{str(k): str(v) for k, v in (args.get("env") or {}).items()}}
    retval = {"status": "failed", "result": ""}
    debug = bool(args.get("debug"))

    def on_line(stream, line):
        if debug:
            worker.log.debug("idl %s: %s", stream, line)
        found = report_line(line, worker.status, worker.log)
        if isinstance(found, dict):
            retval.update(found)
        elif stream == "stdout" and _KEY_VALUE in line and not line.startswith(("[", "<")):
            key, _, value = line.partition(_KEY_VALUE)
            if key.strip().isidentifier():
                retval[key.strip()] = value.strip()

    limit = _Limits(args.get("max_time"), args.get("max_memory"), cancel_event)
    worker.status["idl"] = "running"
    full = [idl, *map(str, cmd)]
    worker.log.debug("idl command: %s", full)
    try:
        result = run_tool(full, limit.stop, on_line=on_line, cwd=folder, env=env,
                          on_start=limit.watch)
    finally:
        limit.done.set()
    if limit.reason:
        worker.status["idl"] = f"killed ({limit.reason})"
        raise RuntimeError(f"idl was stopped: {limit.reason}")
    result.check(full, "idl")
    worker.status["idl"] = "done"
    worker.status["progress"] = 100
    retval["status"] = "ok"
    return 100, retval


class _Limits:
    """Stops IDL when it runs too long or uses too much memory (checked twice a second)."""

    def __init__(self, max_time, max_memory, cancel_event):
        self.max_time = float(max_time) if max_time not in (None, "") else None
        self.max_memory = int(max_memory) if max_memory not in (None, "") else None
        self.cancel_event = cancel_event
        self.stop = threading.Event()
        self.done = threading.Event()
        self.reason = ""

    def watch(self, proc):
        if self.max_time is None and self.max_memory is None and self.cancel_event is None:
            return
        threading.Thread(target=self._watch, args=(proc.pid,), daemon=True).start()

    def _watch(self, pid):
        started = time.monotonic()
        while not self.stop.is_set() and not self.done.is_set():
            if self.cancel_event is not None and self.cancel_event.is_set():
                self.stop.set()
                return
            if self.max_time is not None and time.monotonic() - started > self.max_time:
                self._kill(f"ran longer than max_time {self.max_time:g} s")
                return
            if self.max_memory is not None and _rss(pid) > self.max_memory:
                self._kill(f"used more than max_memory {self.max_memory} bytes")
                return
            self.done.wait(0.5)

    def _kill(self, reason):
        self.reason = reason
        self.stop.set()


def _rss(pid):
    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True))
    except psutil.Error:
        return 0
