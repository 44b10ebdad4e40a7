"""Removes files and folders (folders only with ``recursive``): local paths, and
``s3://`` objects (a key prefix with ``recursive``) or ``ssh://`` paths through the
staging layer."""

import shutil
from pathlib import Path

from cryoflow.staging.base import MissingObjectError, parse_url
from cryoflow.staging.config import StagingConfig
from cryoflow.staging.registry import StagerPool
from cryoflow.workers.args import local_path, truthy

ccmodule = {
    "description": "Remove files, or folders with recursive",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "A path, file://, s3:// or ssh:// URL, or a list of them",
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
    config = getattr(worker, "staging_config", None) or StagingConfig()
    with StagerPool(config) as pool:
        for source in sources if isinstance(sources, list) else [sources]:
            text = str(source)
            if text.startswith(("s3://", "ssh://")):
                done = _remove_remote(pool, text, recursive, missing_ok)
            else:
                text = str(Path(local_path(text)))
                done = _remove(Path(text), recursive, missing_ok)
            if done:
                removed.append(text)
                worker.log.info("removed %s", text)
    return 100, {"removed": removed}


def _remove_remote(pool, text, recursive, missing_ok):
    url = parse_url(text)
    stager = pool.get(url.scheme)
    try:
        if not (recursive and url.is_folder):
            stager.stat(url)  # S3 deletes of missing keys succeed: look first
        stager.remove(url, recursive=recursive)
    except MissingObjectError:
        if not missing_ok:
            raise
        return False
    return True


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
