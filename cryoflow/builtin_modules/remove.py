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
        "extension": "Also remove the companion file with this suffix, e.g. '.hdr'",
        "remove_unzipped": "For an archive (.zip, .tgz, .tar, .gz), also remove the folder "
                           "or file of the same name without that suffix (default false)",
    },
    "outputs": {
        "removed": "The paths that were removed",
        "deleted": "How many were removed",
        "errors": "How many could not be removed (only with ignoreerrors)",
        "error": "What went wrong with those, one line each",
    },
    "defaults": {
        "priority": 0,
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
    removed, errors = [], []
    config = getattr(worker, "staging_config", None) or StagingConfig()
    targets = _with_companions(sources if isinstance(sources, list) else [sources], args)
    with StagerPool(config) as pool:
        for text in targets:
            try:
                if text.startswith(("s3://", "ssh://")):
                    done = _remove_remote(pool, text, recursive, missing_ok)
                else:
                    text = str(Path(local_path(text)))
                    done = _remove(Path(text), recursive, missing_ok)
            except OSError as exc:
                if not missing_ok:
                    raise
                errors.append(f"{text}: {exc}")
                continue
            if done:
                removed.append(text)
                worker.log.info("removed %s", text)
    return 100, {"removed": removed, "deleted": len(removed), "errors": len(errors),
                 "error": "\n".join(errors)}


_ARCHIVE_SUFFIXES = (".zip", ".tgz", ".tar", ".gz")


def _with_companions(sources, args):
    """The sources, each followed by its ``extension`` companion and unzipped twin."""
    extension = args.get("extension")
    unzipped = truthy(args.get("remove_unzipped", False))
    targets = []
    for source in map(str, sources):
        targets.append(source)
        if extension:
            targets.append(source + str(extension))
        if unzipped and source.endswith(_ARCHIVE_SUFFIXES):
            twin = source.rsplit(".", 1)[0]
            if twin.endswith(".tar"):
                twin = twin[:-4]
            if Path(local_path(twin)).exists():
                targets.append(twin)
    return list(dict.fromkeys(targets))


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
