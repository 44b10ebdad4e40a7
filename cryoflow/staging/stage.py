"""What the job runtime calls: make ``type: file`` arguments local, and upload ``post`` outputs.

``stage_in`` (docs/staging.md, "`type: file` arguments"): local paths and ``file://``
URLs are used in place; ``s3://``, ``ssh://`` and ``http(s)://`` URLs are fetched into
the job's work folder through a staging file ``.<name>.part-XXXX`` that is verified
(size, and ETag or checksum where the server gives one) and then renamed into place, so
a crash never leaves a file that looks complete. ``unzip`` extracts with the safe
extractor and the value becomes the list of top-level entries. Transient failures are
retried with backoff (``staging.retry``); each try starts from a fresh staging file.

``stage_out`` (docs/staging.md, "`post` uploads"): uploads a file, a list of files or a
folder to ``s3://…/``, ``ssh://host/path/`` or a local folder and returns the target
URL(s).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cryoflow.errors import StagingError, TransientStagingError
from cryoflow.failpoints import Failpoints
from cryoflow.staging.base import (
    REMOTE_SCHEMES,
    Meta,
    MissingObjectError,
    ParsedURL,
    Stager,
    parse_url,
    safe_parts,
)
from cryoflow.staging.cache import DownloadCache
from cryoflow.staging.config import StagingConfig
from cryoflow.staging.extract import TAR_SUFFIXES, ZIP_SUFFIXES, extract_archive
from cryoflow.staging.local import discard, new_part_file, promote, sweep_parts
from cryoflow.staging.registry import StagerPool
from cryoflow.staging.retry import Sleep, call_with_retry

Value = str | list[str]


def flag(flags: Mapping[str, Any], name: str, default: bool) -> bool:
    """A CryoCloud flag: a boolean or one of the strings ``true``/``false``/``yes``/``no``."""
    value = flags.get(name, default)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def stage_in(
    value: Value,
    flags: Mapping[str, Any],
    *,
    work_dir: Path,
    config: StagingConfig,
    sleep: Sleep = time.sleep,
    failpoints: Failpoints | None = None,
    pool: StagerPool | None = None,
) -> Value:
    """Make ``value`` (a path or URL, or a list of them) local files; return their paths.

    Flags: ``copy`` (default true; false leaves remote URLs as they are unless ``unzip``),
    ``unzip`` (default false), ``proto`` (default ``ssh``) and ``host``: a plain path
    that does not exist here is fetched with ``proto`` from ``host``, the host that
    produced it. Raises :class:`StagingError` naming the URL (never its password).
    The failpoint ``download_midstream`` fires when a download is complete in its
    staging file but not yet renamed into place. ``pool``: see :func:`using`.
    """
    items = value if isinstance(value, list) else [value]
    with using(pool, config) as stagers:
        stage = _Inbound(stagers, config, Path(work_dir), flags, sleep, failpoints or Failpoints())
        paths = [stage.one(str(item)) for item in items]
        if flag(flags, "unzip", False):
            return [str(entry) for path in paths for entry in stage.unpack(Path(path))]
    return paths if isinstance(value, list) else paths[0]


def stage_out(
    retval_value: Value,
    target: str,
    *,
    basename: bool,
    config: StagingConfig,
    sleep: Sleep = time.sleep,
    pool: StagerPool | None = None,
) -> Value:
    """Upload a local file, folder or list of them to ``target``; return the new URL(s).

    With ``basename`` each item keeps its name under ``target`` (a folder or key
    prefix); without it ``target`` is the full destination of the single item. Local
    targets give plain paths back.
    """
    items = retval_value if isinstance(retval_value, list) else [retval_value]
    if not basename and len(items) > 1:
        raise StagingError(f"post to {parse_url(target)} with basename false needs one file")
    dest = parse_url(target)
    with using(pool, config) as stagers:
        out = _Outbound(stagers, config, sleep)
        urls = [out.one(_local_source(str(item)), dest, basename) for item in items]
    return urls if isinstance(retval_value, list) else urls[0]


@contextmanager
def using(pool: StagerPool | None, config: StagingConfig) -> Iterator[StagerPool]:
    """``pool`` as it is, or a new pool closed afterwards.

    A worker that keeps one :class:`StagerPool` for its life and passes it to every
    call reuses S3 clients (about 0.3 s each to create) and ssh sessions across jobs.
    """
    if pool is not None:
        yield pool
        return
    with StagerPool(config) as fresh:
        yield fresh


def sweep_staging(
    work_dir: Path, *, config: StagingConfig | None = None, min_age_s: float = 0.0
) -> list[Path]:
    """Remove staging leftovers (``.*.part-*``) of crashed downloads; call at worker start.

    In ``work_dir`` every leftover older than ``min_age_s`` goes; in the shared cache
    folder only those older than an hour (other workers may be writing there).
    """
    removed = sweep_parts(Path(work_dir), min_age_s=min_age_s)
    if config is not None and config.cache_dir is not None:
        removed += sweep_parts(config.cache_dir, min_age_s=max(min_age_s, 3600.0))
    return removed


@dataclass
class _Inbound:
    pool: StagerPool
    config: StagingConfig
    work_dir: Path
    flags: Mapping[str, Any]
    sleep: Sleep
    failpoints: Failpoints
    names: set[str] = field(default_factory=set)
    fetched: set[Path] = field(default_factory=set)

    def one(self, item: str) -> str:
        url = self._source(parse_url(item))
        if url.scheme == "file":
            return url.path
        if not (flag(self.flags, "copy", True) or flag(self.flags, "unzip", False)):
            return item
        dest = self.work_dir / self._name(url)
        fetch_with_retry(
            self.pool,
            url,
            dest,
            cache=_cache(self.config),
            sleep=self.sleep,
            failpoints=self.failpoints,
        )
        self.fetched.add(dest)
        return str(dest)

    def _source(self, url: ParsedURL) -> ParsedURL:
        """A local path, or where to fetch a path that another host produced."""
        if url.scheme != "file" or Path(url.path).exists():
            return url
        host = self.flags.get("host")
        if not host or host in (socket.gethostname(), "localhost"):
            raise MissingObjectError(f"input file {url.path} does not exist on this host")
        proto = str(self.flags.get("proto") or "ssh")
        if proto not in REMOTE_SCHEMES or not url.path.startswith("/"):
            raise StagingError(f"cannot fetch {url.path} from {host} with proto {proto!r}")
        return parse_url(f"{proto}://{host}{url.path}")

    def _name(self, url: ParsedURL) -> str:
        name = url.name if url.name not in ("", ".", "..") else "download"
        unique, number = name, 1
        while unique in self.names:
            number += 1
            unique = f"{number}-{name}"
        self.names.add(unique)
        return unique

    def unpack(self, archive: Path) -> list[Path]:
        limits = self.config.unzip
        entries = extract_archive(
            archive,
            self.work_dir / _unpacked_name(archive),
            max_members=limits.max_members,
            max_total_bytes=limits.max_total_bytes,
            max_ratio=limits.max_ratio,
        )
        if archive in self.fetched:
            discard(archive)
        return entries


def fetch_with_retry(
    pool: StagerPool,
    url: ParsedURL,
    dest: Path,
    *,
    cache: DownloadCache | None = None,
    sleep: Sleep = time.sleep,
    failpoints: Failpoints | None = None,
) -> Meta:
    """Fetch ``url`` to ``dest`` through a staging file, retrying transient failures."""
    stager = pool.get(url.scheme)
    action = partial(_fetch_once, stager, url, dest, cache, failpoints or Failpoints())
    return call_with_retry(action, pool.config.retry, sleep=sleep)


def _fetch_once(
    stager: Stager, url: ParsedURL, dest: Path, cache: DownloadCache | None, points: Failpoints
) -> Meta:
    part = new_part_file(dest.parent, dest.name)
    try:
        meta = _fill(stager, url, part, cache)
        points.hit("download_midstream")
        promote(part, dest)
    except BaseException:
        discard(part)
        raise
    return meta


def _version(stager: Stager, url: ParsedURL) -> Meta | None:
    """The object's version for the cache; None when the server will not tell (a HEAD
    refused for a presigned GET URL, a 405): then it is just downloaded."""
    try:
        return stager.stat(url)
    except (TransientStagingError, MissingObjectError):
        raise
    except StagingError:
        return None


def _fill(stager: Stager, url: ParsedURL, part: Path, cache: DownloadCache | None) -> Meta:
    """Write the object into ``part``: from the cache when it holds this version."""
    if cache is None:
        return stager.fetch(url, part)
    expected = _version(stager, url)
    key = cache.key(url, expected) if expected is not None else None
    if expected is None or key is None:
        return stager.fetch(url, part, expected=expected)
    if cache.copy_to(key, expected.size, part):
        return expected
    meta = stager.fetch(url, part, expected=expected)
    cache.store(key, part)
    return meta


@dataclass
class _Outbound:
    pool: StagerPool
    config: StagingConfig
    sleep: Sleep

    def one(self, src: Path, dest: ParsedURL, basename: bool) -> str:
        if src.is_dir() and not src.is_symlink():
            return self._folder(src, dest.as_folder().child(src.name) if basename else dest)
        if basename or dest.is_folder:
            dest = dest.as_folder().child(src.name)
        return _shown(self.push(src, dest), dest)

    def _folder(self, src: Path, dest: ParsedURL) -> str:
        dest = dest.as_folder()
        files = _files_under(src)
        if not files:
            raise StagingError(f"post: folder {src} holds no files to upload")
        for path in files:
            self.push(path, dest.child(path.relative_to(src).as_posix()))
        return _shown(dest.redacted(), dest)

    def push(self, src: Path, dest: ParsedURL) -> str:
        stager = self.pool.get(dest.scheme)
        return call_with_retry(partial(stager.push, src, dest), self.config.retry, sleep=self.sleep)


def _shown(url: str, dest: ParsedURL) -> str:
    """What the retval holds: a plain path for local targets, else the redacted URL."""
    return (dest.path.rstrip("/") or "/") if dest.scheme == "file" else url


def _files_under(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise StagingError(f"post: {path} is a symbolic link; only files are uploaded")
        if path.is_file():
            safe_parts(path.relative_to(folder).as_posix())
            files.append(path)
    return files


def _local_source(item: str) -> Path:
    url = parse_url(item)
    if url.scheme != "file":
        raise StagingError(f"post: output {url} is not a local file")
    path = Path(url.path)
    if not path.exists():
        raise MissingObjectError(f"post: output file {path} does not exist")
    return path


def _unpacked_name(archive: Path) -> str:
    lower = archive.name.lower()
    suffix = next((s for s in TAR_SUFFIXES + ZIP_SUFFIXES if lower.endswith(s)), "")
    stem = archive.name[: len(archive.name) - len(suffix)] if suffix else ""
    return stem or f"{archive.name}.unpacked"


def _cache(config: StagingConfig) -> DownloadCache | None:
    if config.cache_dir is None:
        return None
    return DownloadCache(config.cache_dir, config.cache_max_bytes).open()
