"""Unpacks zip and tar archives safely (see cryoflow.staging.extract).

CryoCloud's contract holds: ``src`` (one archive or a list), ``dst`` (or ``destDir``)
or a fresh folder under ``tempDir``, ``keep`` (keep a partly unpacked folder after a
failure), and the outputs ``destDir``, ``fileList`` and ``error``. ``dst`` and ``files``
give the same values under cryoflow's earlier names.

Unlike CryoCloud, a node that gives none of ``dst``, ``destDir`` and ``tempDir`` does
not unpack beside the archive (inside a watched folder that would start new pebbles):
``workfolder`` makes its ``tempDir`` the pebble's own tempdir, removed with the pebble
unless the node sets ``keep`` (then a new folder in the system's temporary folder).
"""

import shutil
import tempfile
from pathlib import Path

from cryoflow.staging.extract import extract_archive
from cryoflow.workers.args import local_path, truthy

ccmodule = {
    "description": "Unpack zip, tar, tar.gz/tgz, tar.bz2 and tar.xz archives, refusing unsafe ones",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "The archive (a path or file:// URL), or a list of archives",
        "dst": "Folder to unpack into (default: a new folder under tempDir)",
        "destDir": "The same as dst (CryoCloud's name)",
        "tempDir": "Folder in which to create a new unpack folder when dst is not given "
                   "(default: the pebble's work folder, removed with the pebble)",
        "keep": "Keep what was unpacked when an archive fails, and after the pebble when "
                "no folder is given (default false)",
        "max_members": "Most members an archive may have (default 100000)",
        "max_bytes": "Most bytes an archive may unpack to (default 50 GiB)",
        "max_ratio": "Highest compression ratio accepted (default 200)",
    },
    "outputs": {
        "destDir": "The folder unpacked into (a list for a list of archives)",
        "fileList": "The top-level entries unpacked, as full paths",
        "error": "Empty on success",
        "files": "The same as fileList",
        "dst": "The same as destDir",
    },
    "workfolder": ["tempDir", "dst", "destDir", "keep"],
    "defaults": {
        "priority": 10,
        "runOn": "success",
    },
    "status": {
        "progress": "Archives done, 0-100",
    },
}

_LIMITS = (
    ("max_members", "max_members", int),
    ("max_bytes", "max_total_bytes", int),
    ("max_ratio", "max_ratio", float),
)


def process_task(worker, task, cancel_event=None):
    """Unpack each archive of ``src``; refuses absolute paths, '..', links and devices."""
    args = task["args"]
    sources = args.get("src")
    if not sources:
        raise ValueError("unzip needs src (an archive or a list of archives)")
    archives = sources if isinstance(sources, list) else [sources]
    limits = {key: kind(args[name]) for name, key, kind in _LIMITS if args.get(name) is not None}
    files, folders, made = [], [], []
    for done, source in enumerate(archives, 1):
        if cancel_event is not None and cancel_event.is_set():
            break
        archive = Path(local_path(str(source)))
        target = _target(args, made)
        try:
            files.extend(str(entry) for entry in extract_archive(archive, target, **limits))
        except BaseException:
            if not truthy(args.get("keep", False)):
                for folder in made:
                    shutil.rmtree(folder, ignore_errors=True)
            raise
        folders.append(str(target))
        worker.status["progress"] = 100 * done // len(archives)
    dest = folders if isinstance(sources, list) else folders[0]
    return 100, {"destDir": dest, "fileList": files, "error": "", "dst": dest, "files": files}


def _target(args, made):
    """Where ``archive`` unpacks: dst (or destDir), else a new folder under tempDir (a
    graph gives the pebble's work folder; called without one, the system's)."""
    dst = args.get("dst") or args.get("destDir")
    if dst:
        return Path(local_path(str(dst)))
    if made:  # one new folder for all the archives of the job, as CryoCloud made
        return made[0]
    parent = Path(local_path(str(args["tempDir"]))) if args.get("tempDir") else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="unzip-", dir=parent))
    made.append(folder)
    return folder
