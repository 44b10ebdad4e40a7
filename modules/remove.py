"""Removes local files and folders (folders only with ``recursive``)."""

import shutil
from pathlib import Path

from cryoflow.workers.args import local_path, truthy

ccmodule = {
    "description": "Remove files, or folders with recursive",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "A path or file:// URL, or a list of them",
        "recursive": "Remove folders with everything in them (default false)",
        "ignoreerrors": "Succeed when a path does not exist (default true)",
    },
    "outputs": {
        "removed": "The paths that were removed",
    },
    "defaults": {
        "priority": 50,
        "runOn": "always",
        "type": "admin",
    },
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    """Remove every path of ``src``; a folder needs ``recursive``."""
    args = task["args"]
    sources = args.get("src")
    if sources is None:
        raise ValueError("remove needs src (a path or a list of paths)")
    recursive = truthy(args.get("recursive", False))
    missing_ok = truthy(args.get("ignoreerrors", True))
    removed = []
    for source in sources if isinstance(sources, list) else [sources]:
        path = Path(local_path(str(source)))
        if _remove(path, recursive, missing_ok):
            removed.append(str(path))
            worker.log.info("removed %s", path)
    return 100, {"removed": removed}


def _remove(path, recursive, missing_ok):
    if str(path.resolve()) == "/" or not str(path):
        raise ValueError(f"refusing to remove {path!r}")
    if path.is_dir() and not path.is_symlink():
        if not recursive:
            raise IsADirectoryError(f"{path} is a folder; set recursive to remove it")
        shutil.rmtree(path)
        return True
    try:
        path.unlink()
    except FileNotFoundError:
        if not missing_ok:
            raise
        return False
    return True
