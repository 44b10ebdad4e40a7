"""``CryoCloud.Common.fileprep.FilePrepare``: fetch, upload and remove files by URL.

cryoflow's own implementation on its staging layer (docs/staging.md), so it speaks
``s3://``, ``ssh://``, ``http(s)://``, ``file://`` and plain paths with the job's
staging config (credentials, retries). :meth:`FilePrepare.fix` makes URLs local files
under ``s3root`` (default: the worker's temporary folder) and unpacks archives whose
URL carries ``?unzip=true``; it returns ``{"fileList": [...], "size": bytes}``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryoflow.staging.base import parse_url
from cryoflow.staging.config import StagingConfig
from cryoflow.staging.registry import StagerPool
from cryoflow.staging.stage import stage_in, stage_out
from cryoflow.workers.handle import current_handle


def _staging_config() -> StagingConfig:
    handle = current_handle()
    config = getattr(handle, "staging_config", None)
    return config if isinstance(config, StagingConfig) else StagingConfig()


class FilePrepare:
    def __init__(self, root: str = "/", s3root: str | None = None,
                 timeout: float | None = None) -> None:
        self.root = root or "/"
        self.s3root = s3root or os.path.join(tempfile.gettempdir(), "cryoflow-fileprep")
        self.timeout = timeout
        self._fetched: dict[str, list[str]] = {}

    # local files

    @staticmethod
    def get_tree_size(path: str) -> int:
        """Bytes of ``path``, or of every file below it."""
        if os.path.isfile(path):
            return os.path.getsize(path)
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _dirs, files in os.walk(path) for name in files)

    scandir_get_tree_size = get_tree_size

    def has_file(self, path: str) -> bool:
        return os.path.exists(os.path.join(self.root, path.lstrip("/")) if self.root != "/"
                              else path)

    # fetching

    def fix(self, urls: Iterable[str] | str, stop_event: threading.Event | None = None
            ) -> dict[str, Any]:
        """Make each URL a local file (fetched or unpacked); return the files and size."""
        files: list[str] = []
        for url in [urls] if isinstance(urls, str) else list(urls):
            if stop_event is not None and stop_event.is_set():
                raise RuntimeError("stopped while preparing files")
            local = self._fix_one(url)
            self._fetched[url] = local
            files.extend(local)
        return {"fileList": files, "size": sum(self.get_tree_size(f) for f in files)}

    def _fix_one(self, url: str) -> list[str]:
        base, _, query = url.partition("?")
        flags = dict(part.partition("=")[::2] for part in query.split("&") if part)
        Path(self.s3root).mkdir(parents=True, exist_ok=True)
        value = stage_in(base, flags, work_dir=Path(self.s3root), config=_staging_config())
        return list(value) if isinstance(value, list) else [value]

    def cleanup(self, urls: Iterable[str] | str) -> None:
        """Remove what :meth:`fix` fetched for these URLs (local paths stay)."""
        for url in [urls] if isinstance(urls, str) else list(urls):
            for path in self._fetched.pop(url, []):
                if url.split("?")[0] in (path, f"file://{path}"):
                    continue
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.remove(path)

    # S3 and scp, by parts as CryoCloud named them

    def copy_s3(self, server: str, bucket: str, remote_file: str, local_file: str) -> None:
        self._get(f"s3://{server}/{bucket}/{remote_file}", local_file)

    def write_s3(self, server: str, bucket: str, local_file: str, remote_file: str) -> str:
        return self._put(local_file, f"s3://{server}/{bucket}/{remote_file}")

    def remove_s3_file(self, server: str, bucket: str, remote_file: str) -> None:
        self._remove(f"s3://{server}/{bucket}/{remote_file}", recursive=False)

    def remove_s3_bucket(self, server: str, bucket: str) -> None:
        """Remove every object of the bucket (the bucket itself stays)."""
        self._remove(f"s3://{server}/{bucket}/", recursive=True)

    def copy_scp(self, host: str, filename: str, target_dir: str) -> str:
        target = os.path.join(target_dir, os.path.basename(filename))
        self._get(f"ssh://{host}{filename}", target)
        return target

    def write_scp(self, local_file: str, host: str, target: str) -> str:
        return self._put(local_file, f"ssh://{host}{target}")

    def _get(self, url: str, local_file: str) -> None:
        folder = Path(local_file).parent
        folder.mkdir(parents=True, exist_ok=True)
        fetched = stage_in(url, {}, work_dir=folder, config=_staging_config())
        if str(fetched) != local_file:
            os.replace(str(fetched), local_file)

    def _put(self, local_file: str, url: str) -> str:
        return str(stage_out(local_file, url, basename=False, config=_staging_config()))

    def _remove(self, url: str, *, recursive: bool) -> None:
        parsed = parse_url(url)
        with StagerPool(_staging_config()) as pool:
            pool.get(parsed.scheme).remove(parsed, recursive=recursive)
