"""Preparing a job's arguments before it runs, and its ``post`` uploads afterwards.

``Task.files`` says which arguments name files or folders (docs/staging.md):

- ``{"type": "dir"}``: the folder (or each folder of a list) is created.
- ``{"type": "tempdir", "id": ID}``: the value becomes the deterministic folder
  ``<base>/cryoflow-<workflow>-<pebble_id>-<ID>``, created when missing, where
  ``<base>`` is ``spec["base"]``, else the argument's resolved value, else the worker's
  temp folder; every argument with the same id in a pebble gets the same folder.
- ``{"type": "file", "unzip": bool}``: local paths and ``file://`` URLs are used in
  place; with ``unzip`` the archive is extracted into the job's work folder
  (``x.tar.gz`` into ``<work>/x/``, never beside the archive) and the value becomes the
  list of top-level entries. URLs (``s3://``,
  ``ssh://``, ``http(s)://``) and paths produced on another ``host`` are fetched by
  the staging layer into the pebble's ``inputs`` folder (:mod:`cryoflow.staging`).

``post`` entries copy ``retval[output]`` into a local folder (or ``file://`` URL)
through a temporary name and a rename, or upload it to an ``s3://``/``ssh://`` target.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryoflow.errors import StagingError
from cryoflow.staging.config import StagingConfig
from cryoflow.staging.extract import TAR_SUFFIXES, ZIP_SUFFIXES, extract_archive
from cryoflow.staging.registry import StagerPool
from cryoflow.staging.stage import stage_in, stage_out
from cryoflow.workers.base import Task

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def truthy(value: Any) -> bool:
    """CryoCloud flags arrive as booleans or as the strings ``"true"``/``"false"``."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def prepare_args(task: Task) -> dict[str, Any]:
    """Return the args ``process_task`` sees, with every ``task.files`` entry prepared.

    Raises :class:`StagingError` when a file cannot be made local or unpacked.
    """
    args = dict(task.args)
    for name, spec in task.files.items():
        kind = spec.get("type")
        if kind == "dir":
            _make_dirs(args.get(name))
        elif kind == "tempdir":
            args[name] = str(tempdir_path(task, name, spec, args.get(name)))
        elif kind == "file" and args.get(name) is not None:
            if _needs_fetching(args[name], spec):
                work = _work_dir(task, name)
                config, pool = staging_for(task)
                args[name] = stage_in(args[name], spec, work_dir=work, config=config,
                                      pool=pool)
            else:
                args[name] = _stage_files(name, args[name], spec, partial(_work_dir, task, name))
    return args


def _work_dir(task: Task, name: str) -> Path:
    """The job's work folder: its ``workdir``, else the pebble's inputs tempdir (removed
    when the pebble ends)."""
    return Path(task.workdir) if task.workdir else tempdir_path(task, name, {"id": "inputs"})


def _is_remote(value: Any) -> bool:
    text = str(value)
    return "://" in text and not text.startswith("file://")


def _needs_fetching(value: Any, spec: Mapping[str, Any]) -> bool:
    items = value if isinstance(value, list) else [value]
    if spec.get("host") and spec["host"] not in (socket.gethostname(), "localhost"):
        return any(_is_remote(i) or not Path(str(i)).exists() for i in items)
    return any(_is_remote(item) for item in items)


_POOLS: dict[str, tuple[StagingConfig, StagerPool]] = {}
"""One stager pool per staging config in this worker process (clients are reused)."""


def staging_for(task: Task) -> tuple[StagingConfig, StagerPool]:
    """The staging config the head sent with ``task``, and this process's pool for it."""
    key = json.dumps(task.staging, sort_keys=True, default=str)
    found = _POOLS.get(key)
    if found is None:
        config = StagingConfig.from_config({"staging": dict(task.staging)})
        found = _POOLS[key] = (config, StagerPool(config))
    return found


def tempdir_path(task: Task, name: str, spec: Mapping[str, Any], value: Any = None) -> Path:
    """The pebble's folder for tempdir ``spec["id"]``, created (owned by us) if missing."""
    base = Path(
        spec.get("base")
        or (value if isinstance(value, str) and value else None)
        or tempfile.gettempdir()
    )
    ident = spec.get("id") or f"{task.node}.{name}"
    label = "-".join(_safe_name(str(part)) for part in (task.workflow, task.pebble_id, ident))
    path = base / f"cryoflow-{label}"
    path.mkdir(parents=True, exist_ok=True)
    info = path.lstat()
    if path.is_symlink() or not path.is_dir() or info.st_uid != os.geteuid():
        raise StagingError(f"tempdir {path} exists but is not a folder owned by this user")
    return path


def _safe_name(text: str) -> str:
    cleaned = _UNSAFE_NAME.sub("_", text).strip(".")
    return cleaned or "_"


def _make_dirs(value: Any) -> None:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and item:
            Path(local_path(item, "dir")).mkdir(parents=True, exist_ok=True)


def _stage_files(name: str, value: Any, spec: Mapping[str, Any],
                 work_dir: Callable[[], Path]) -> Any:
    items = value if isinstance(value, list) else [value]
    paths = [_existing_local_file(name, str(item)) for item in items]
    if not truthy(spec.get("unzip")):
        return [str(p) for p in paths] if isinstance(value, list) else str(paths[0])
    # Into the work folder, never beside the archive (which may sit in a watched inbox).
    work, used = work_dir(), set()
    entries = []
    for path in paths:
        folder = target = unpack_folder(path).name
        copy = 1
        while target in used:  # two archives of one name: 2-name, 3-name, ...
            copy += 1
            target = f"{copy}-{folder}"
        used.add(target)
        entries += extract_archive(path, work / target)
    return [str(entry) for entry in entries]


def local_path(value: str, what: str = "file") -> str:
    """A plain path or ``file://`` URL as a local path; other URLs are not local yet."""
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return unquote(parts.path)
    raise StagingError(
        f"fetching {parts.scheme}:// URLs needs the staging layer, which cannot handle "
        f"this {what} yet: {_without_credentials(value)}"
    )


def _existing_local_file(name: str, value: str) -> Path:
    path = Path(local_path(value))
    if not path.exists():
        raise StagingError(f"input file {path} of argument {name!r} does not exist here")
    return path


def unpack_folder(archive: Path) -> Path:
    """The folder beside ``archive`` it unpacks into: its name without the suffix."""
    lower = archive.name.lower()
    suffix = next((s for s in TAR_SUFFIXES + ZIP_SUFFIXES if lower.endswith(s)), None)
    folder = archive.name[: -len(suffix)] if suffix else f"{archive.name}.unpacked"
    return archive.with_name(folder or "unpacked")


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


def post_outputs(retval: Any, posts: Sequence[Mapping[str, Any]],
                 task: Task | None = None) -> Any:
    """Copy each ``post`` output to its target; return retval with the new path(s).

    Raises :class:`StagingError` for a missing output key, a missing source file, or a
    target that is not local.
    """
    if not posts:
        return retval
    result = dict(retval or {})
    for post in posts:
        key = post["output"]
        if result.get(key) is None:
            raise StagingError(f"post: the job returned no output {key!r} to upload")
        target, basename = str(post["target"]), truthy(post.get("basename", True))
        if _is_remote(target) and task is not None:
            config, pool = staging_for(task)
            result[key] = stage_out(result[key], target, basename=basename, config=config,
                                    pool=pool)
        else:
            result[key] = _post_one(result[key], target, basename)
    return result


def _post_one(value: Any, target: str, basename: bool) -> Any:
    folder = Path(local_path(target, "post target"))
    if isinstance(value, list):
        if not basename and len(value) > 1:
            raise StagingError(f"post to {target} with basename false needs a single file")
        return [_post_one(item, target, basename) for item in value]
    source = Path(local_path(str(value)))
    if not source.exists():
        raise StagingError(f"post: output file {source} does not exist")
    dest = folder / source.name if basename else folder
    copy_atomic(source, dest)
    return str(dest)


def copy_atomic(source: Path, dest: Path) -> None:
    """Copy a file or folder to ``dest`` through a temporary name, then rename it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=dest.parent))
    try:
        staged = temp / "data"
        if source.is_dir():
            shutil.copytree(source, staged, symlinks=True)
        else:
            shutil.copy2(source, staged)
        _replace(staged, dest)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _replace(staged: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink():
        trash = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.rename(dest, trash)
        os.rename(staged, dest)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, dest)
