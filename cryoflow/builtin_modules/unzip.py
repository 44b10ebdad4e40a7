"""Unpacks zip and tar archives safely (see cryoflow.staging.extract)."""

from pathlib import Path

from cryoflow.staging.extract import extract_archive
from cryoflow.workers.args import local_path, unpack_folder

ccmodule = {
    "description": "Unpack zip, tar, tar.gz/tgz, tar.bz2 and tar.xz archives, refusing unsafe ones",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "The archive (a path or file:// URL), or a list of archives",
        "dst": "Folder to unpack into (default: beside the archive, named after it)",
        "max_members": "Most members an archive may have (default 100000)",
        "max_bytes": "Most bytes an archive may unpack to (default 50 GiB)",
        "max_ratio": "Highest compression ratio accepted (default 200)",
    },
    "outputs": {
        "files": "The top-level entries unpacked, as full paths",
        "dst": "The folder unpacked into (a list for a list of archives)",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
        "type": "admin",
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
    files, folders = [], []
    for done, source in enumerate(archives, 1):
        if cancel_event is not None and cancel_event.is_set():
            break
        archive = Path(local_path(str(source)))
        target = Path(local_path(str(args["dst"]))) if args.get("dst") else unpack_folder(archive)
        files.extend(str(entry) for entry in extract_archive(archive, target, **limits))
        folders.append(str(target))
        worker.status["progress"] = 100 * done // len(archives)
    return 100, {"files": files, "dst": folders if isinstance(sources, list) else folders[0]}
