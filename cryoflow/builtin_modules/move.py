"""Moves files or folders, also across filesystems (copy, rename into place, delete)."""

import errno
import os
import shutil
from pathlib import Path

from cryoflow.workers.args import copy_atomic, local_path, truthy

ccmodule = {
    "description": "Move files or folders to another path or folder, across filesystems too",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "A path or file:// URL, or a list of them",
        "dst": "The new path; for a list, or an existing folder, the folder to move into",
        "dontstop": "Move the other sources when one fails, and report it (default false)",
    },
    "outputs": {
        "dst": "The new path (a list for a list of sources)",
        "errors": "With dontstop: what could not be moved, one line each",
    },
    "defaults": {
        "priority": 10,
        "runOn": "always",
    },
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    """Move ``src`` to ``dst``; a list (or an existing folder as dst) moves into dst."""
    args = task["args"]
    if not args.get("src") or not args.get("dst"):
        raise ValueError("move needs src and dst")
    sources = args["src"]
    target = Path(local_path(str(args["dst"])))
    into = isinstance(sources, list) or target.is_dir() or str(args["dst"]).endswith("/")
    moved, errors = [], []
    dontstop = truthy(args.get("dontstop", False))
    for source in sources if isinstance(sources, list) else [sources]:
        src = Path(local_path(str(source)))
        dst = target / src.name if into else target
        try:
            move(src, dst)
        except OSError as exc:
            if not dontstop:
                raise
            errors.append(f"{src}: {exc}")
            continue
        worker.log.info("moved %s to %s", src, dst)
        moved.append(str(dst))
    if not moved and errors:
        raise OSError("nothing could be moved: " + "; ".join(errors))
    out = {"dst": moved if isinstance(sources, list) else moved[0]}
    if dontstop:
        out["errors"] = "\n".join(errors)
    return 100, out


def move(src, dst):
    """Rename when on one filesystem; else copy under a temporary name, rename, delete."""
    if not src.exists() and not src.is_symlink():
        raise FileNotFoundError(f"cannot move {src}: it does not exist")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
            raise
    copy_atomic(src, dst)
    if src.is_dir() and not src.is_symlink():
        shutil.rmtree(src)
    else:
        src.unlink()
