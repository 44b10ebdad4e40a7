"""Packs files or a folder into a tar.gz or zip archive (written under a temporary name)."""

import os
import tarfile
import tempfile
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
    },
    "outputs": {
        "dst": "The archive created",
    },
    "defaults": {
        "priority": 50,
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
    fmt = args.get("format") or _format_of(dst)
    create(paths, dst, fmt)
    worker.log.info("archived %d entries into %s", len(paths), dst)
    return 100, {"dst": str(dst)}


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
