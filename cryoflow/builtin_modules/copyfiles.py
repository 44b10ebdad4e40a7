"""Copy files between any two supported locations: local paths, s3://, ssh:// (and from http(s)://).

Each source is made local first (used in place when it already is, else downloaded
into a temporary folder through the same verified, retried staging as ``type: file``
arguments), then uploaded to ``dst`` like a ``post`` target. Sources that are local
folders are copied whole; remote folders (key prefixes) are not listed: name the files.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from cryoflow.errors import StagingError
from cryoflow.staging.base import parse_url
from cryoflow.staging.config import StagingConfig
from cryoflow.staging.stage import flag, stage_in, stage_out

ccmodule = {
    "description": "Copy files between local folders, s3://, ssh:// and http(s):// sources",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "A file, folder or URL, or a list of them",
        "dst": "Target folder or key prefix (s3://bucket/prefix/, ssh://host/dir/, /dir/); "
        "with basename false, the full target of the single source",
        "basename": "Keep each source's name under dst (default true)",
        "extension": "Also copy each source's companion file with this suffix, e.g. '.hdr'",
        "dontstop": "Copy the other sources when one fails, and report it (default false)",
    },
    "outputs": {
        "dst": "Where the copies are: a URL or path, or a list like src",
        "errors": "With dontstop: what could not be copied, one line each",
    },
    "defaults": {"priority": 10, "runOn": "success"},
    "status": {"progress": "Progress 0-100%", "state": "The source being copied"},
}


def process_task(
    worker: Any, task: dict[str, Any], cancel_event: threading.Event | None = None
) -> tuple[int, dict[str, Any]]:
    args = task["args"]
    if not args.get("src") or not args.get("dst"):
        raise StagingError("copyfiles needs both 'src' and 'dst' arguments")
    sources = args["src"] if isinstance(args["src"], list) else [args["src"]]
    basename = flag(args, "basename", True)
    config = getattr(worker, "staging_config", None) or StagingConfig()
    copies: list[str] = []
    errors: list[str] = []
    extension = args.get("extension")
    for index, source in enumerate(sources):
        if cancel_event is not None and cancel_event.is_set():
            raise StagingError(f"copyfiles cancelled before {parse_url(str(source))}")
        worker.status["state"] = str(parse_url(str(source)))
        try:
            copies.append(copy_one(str(source), str(args["dst"]), basename, config))
            if extension and Path(str(source) + str(extension)).exists():
                copy_one(str(source) + str(extension), str(args["dst"]), basename, config)
        except (StagingError, OSError) as exc:
            if not flag(args, "dontstop", False):
                raise
            errors.append(f"{source}: {exc}")
        worker.status["progress"] = int(100 * (index + 1) / len(sources))
    if not copies:
        raise StagingError("nothing could be copied: " + "; ".join(errors))
    dst: Any = copies if isinstance(args["src"], list) else copies[0]
    if flag(args, "dontstop", False):
        return 100, {"dst": dst, "errors": "\n".join(errors)}
    return 100, {"dst": dst}


def copy_one(source: str, dst: str, basename: bool, config: StagingConfig) -> str:
    """Copy one source to ``dst``; return where the copy is."""
    url = parse_url(source)
    if url.scheme != "file" and url.is_folder:
        raise StagingError(f"copyfiles cannot list the remote folder {url}: name its files")
    with tempfile.TemporaryDirectory(prefix="cryoflow-copyfiles-") as folder:
        local = stage_in(source, {"copy": True}, work_dir=Path(folder), config=config)
        result = stage_out(str(local), dst, basename=basename, config=config)
    return str(result)
