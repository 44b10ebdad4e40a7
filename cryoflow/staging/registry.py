"""URL scheme → stager backend, imported only when a URL of that scheme is first used.

A backend whose library is not installed fails at the point of use with an install
hint ("s3:// URLs need boto3: pip install 'cryoflow[s3]'"), never at import of cryoflow.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import cast

from cryoflow.errors import StagingError
from cryoflow.staging.base import Stager
from cryoflow.staging.config import StagingConfig


@dataclass(frozen=True)
class Backend:
    """Where a scheme's stager lives and what it needs installed."""

    module: str
    cls: str
    library: str | None = None
    extra: str | None = None


BACKENDS: dict[str, Backend] = {
    "file": Backend("cryoflow.staging.local", "LocalStager"),
    "s3": Backend("cryoflow.staging.s3", "S3Stager", "boto3", "s3"),
    "ssh": Backend("cryoflow.staging.ssh", "SshStager", "paramiko", "ssh"),
    "http": Backend("cryoflow.staging.http", "HttpStager"),
    "https": Backend("cryoflow.staging.http", "HttpStager"),
}


def stager_class(scheme: str) -> Callable[[StagingConfig], Stager]:
    """The stager class for ``scheme``; raises :class:`StagingError` with an install hint."""
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise StagingError(f"no stager for {scheme}:// URLs; known: {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(backend.module)
    except ModuleNotFoundError as exc:
        if backend.library and (exc.name or "").split(".")[0] in (backend.library, "botocore"):
            raise StagingError(
                f"{scheme}:// URLs need {backend.library}: pip install 'cryoflow[{backend.extra}]'"
            ) from exc
        raise
    return cast(Callable[[StagingConfig], Stager], getattr(module, backend.cls))


def open_stager(scheme: str, config: StagingConfig) -> Stager:
    """A new stager for ``scheme``; the caller closes it."""
    return stager_class(scheme)(config)


class StagerPool:
    """One stager per scheme, opened on first use and closed together.

    Use as a context manager around the staging of one job, so connections (an ssh
    session, an S3 connection pool) are reused across the files of that job.
    """

    def __init__(self, config: StagingConfig) -> None:
        self.config = config
        self._open: dict[str, Stager] = {}

    def get(self, scheme: str) -> Stager:
        """The stager for ``scheme`` (``http`` and ``https`` share one)."""
        key = "http" if scheme == "https" else scheme
        if key not in self._open:
            self._open[key] = open_stager(scheme, self.config)
        return self._open[key]

    def close(self) -> None:
        """Close every stager opened so far."""
        stagers, self._open = list(self._open.values()), {}
        for stager in stagers:
            stager.close()

    def __enter__(self) -> StagerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
