"""Packs files or a folder into a tar.gz or zip archive (written under a temporary name),
or, when ``dst`` is a folder, copies into it as a rolling archive.

A ``dst`` whose name ends in an archive suffix (or a ``format``) makes an archive file.
Any other ``dst`` is a folder (CryoCloud's archive): each source is copied into it and
then the oldest entries of the folder are deleted while it holds more than ``maxsize``
megabytes, and every entry older than ``maxage`` seconds is deleted.
"""

import os
import shutil
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from cryoflow.workers.args import local_path

ccmodule = {
    "description": "Create a tar.gz, tar, tar.bz2, tar.xz or zip archive of files or a folder",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "A folder, a file, or a list of files and folders",
        "dst": "The archive to create; its suffix picks the format",
        "format": "Override the format: zip, tar, gztar, bztar or xztar",
        "maxsize": "Folder archive: most megabytes kept; the oldest entries go first",
        "maxage": "Folder archive: entries older than this many seconds are deleted",
        "dontstop": "Folder archive: copy the other sources when one fails (default false)",
    },
    "outputs": {
        "dst": "The archive created, or the archive folder",
        "removed": "Folder archive: the entries deleted to keep it within its limits",
        "errors": "Folder archive with dontstop: what could not be copied",
    },
    "defaults": {
        "priority": 10,
        "runOn": "success",
        "type": "admin",
    },
    "status": {},
}

_TAR_MODES = {"tar": "w", "gztar": "w:gz", "bztar": "w:bz2", "xztar": "w:xz"}
_SUFFIXES = (
    (".zip", "zip"),
    (".tar.gz", "gztar"),
    (".tgz", "gztar"),
    (".tar.bz2", "bztar"),
    (".tar.xz", "xztar"),
    (".tar", "tar"),
)


def process_task(worker, task, cancel_event=None):
    """Archive every entry of ``src`` under its base name into ``dst``."""
    args = task["args"]
    if not args.get("src") or not args.get("dst"):
        raise ValueError("archive needs src and dst")
    sources = args["src"] if isinstance(args["src"], list) else [args["src"]]
    paths = [Path(local_path(str(source))) for source in sources]
    dst = Path(local_path(str(args["dst"])))
    if not args.get("format") and not _is_archive_name(dst):
        return 100, archive_into_folder(worker, paths, dst, args)
    fmt = args.get("format") or _format_of(dst)
    create(paths, dst, fmt)
    worker.log.info("archived %d entries into %s", len(paths), dst)
    return 100, {"dst": str(dst)}


def _is_archive_name(dst):
    return any(dst.name.lower().endswith(suffix) for suffix, _fmt in _SUFFIXES)


def archive_into_folder(worker, paths, folder, args):
    """Copy ``paths`` into ``folder``, then trim it to ``maxsize`` MB and ``maxage`` s."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for done, path in enumerate(paths, 1):
        try:
            target = folder / path.name
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(path, target)
        except OSError as exc:
            if not args.get("dontstop"):
                raise
            errors.append(f"{path}: {exc}")
        worker.status["progress"] = 90 * done // max(1, len(paths))
    removed = trim(folder, args.get("maxsize"), args.get("maxage"), time.time())
    for entry in removed:
        worker.log.info("archive %s: removed %s", folder, entry)
    worker.status["progress"] = 100
    return {"dst": str(folder), "removed": removed, "errors": "\n".join(errors)}


def trim(folder, maxsize_mb, maxage_s, now):
    """Delete entries older than ``maxage_s``, then the oldest while over ``maxsize_mb``."""
    entries = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        entries.append((_newest(entry), _size(entry), entry))
    entries.sort(key=lambda item: item[0], reverse=True)  # newest first
    total, removed = 0, []
    for mtime, size, entry in entries:
        too_old = maxage_s is not None and now - mtime > float(maxage_s)
        too_big = maxsize_mb is not None and total + size > float(maxsize_mb) * 1e6
        if too_old or too_big:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(str(entry))
        else:
            total += size
    return removed


def _files(entry):
    return [entry] if not entry.is_dir() else [p for p in entry.rglob("*") if p.is_file()]


def _newest(entry):
    return max((p.stat().st_mtime for p in _files(entry)), default=entry.stat().st_mtime)


def _size(entry):
    return sum(p.stat().st_size for p in _files(entry))


def _format_of(dst):
    name = dst.name.lower()
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the archive format of {dst}; name it .tar.gz or .zip")


def create(paths, dst, fmt):
    """Write the archive beside ``dst`` under a temporary name, then rename it."""
    if fmt != "zip" and fmt not in _TAR_MODES:
        raise ValueError(f"unknown archive format {fmt!r}")
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"cannot archive {path}: it does not exist")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{dst.name}.part-", dir=dst.parent)
    os.close(fd)
    try:
        if fmt == "zip":
            _write_zip(paths, temp)
        else:
            with tarfile.open(temp, _TAR_MODES[fmt]) as tar:
                for path in paths:
                    tar.add(path, arcname=path.name)
        os.replace(temp, dst)
    except BaseException:
        os.unlink(temp)
        raise


def _write_zip(paths, temp):
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, path.name)
            if path.is_dir():
                for child in sorted(path.rglob("*")):
                    zf.write(child, Path(path.name) / child.relative_to(path))
