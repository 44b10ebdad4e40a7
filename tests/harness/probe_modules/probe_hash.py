"""Probe: an idempotent job that reports the sha256 of its input file(s)."""

import hashlib

from probe_marks import Execution

ccmodule = {
    "description": "Hash input files",
    "inputs": {"ledger_dir": "marker folder", "path": "a file, or a list of files"},
    "outputs": {"sha256": "hex digest, or a list of them"},
    "defaults": {},
    "status": {},
}


def _digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def process_task(worker, task, cancel_event=None):
    run = Execution(task)
    paths = task["args"]["path"]
    result = [_digest(p) for p in paths] if isinstance(paths, list) else _digest(paths)
    run.finish(sha256=result)
    return 100, {"sha256": result}
