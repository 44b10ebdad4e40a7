"""Typed run settings, built once by the CLI (or the Python API) and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoflow.graph.model import empty_map


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How ``ccworkflow`` runs a graph. Units are in the names."""

    state_dir: Path | None = None
    """Default: ``./.cryoflow/<workflow-name>/``."""
    fresh: bool = False
    module_paths: tuple[Path, ...] = ()
    workers: int | None = None
    """Normal workers; default one per CPU."""
    admin_workers: int = 1
    gpus: int | None = None
    """GPU workers; default: as many as detected."""
    config: Mapping[str, Any] = field(default_factory=empty_map)
    report_path: Path | None = None
    loglevel: str = "INFO"
    http: str | None = "127.0.0.1:0"
    """``HOST:PORT`` of the head's HTTP service, or None for ``--no-http``."""
    http_token: str | None = None
    """The API's read-only token (default: ``$CRYOFLOW_API_TOKEN``)."""
    admin_token: str | None = None
    """The API's token for actions (default: ``$CRYOFLOW_ADMIN_TOKEN``, else http_token)."""
    stay: bool = False
    """Keep serving the web view and API after the work is done, until Ctrl-C."""
    executor: str = "local"
    scheduler: str | None = None
    kubernetes: bool = False
    nocache: bool = False
    lease_s: float = 30.0
    max_jobs_per_worker: int = 0
    """Recycle a worker process after this many jobs (0: never)."""
    max_worker_memory_mb: int = 0
    """Recycle a worker process once its RSS exceeds this (0: never)."""
    prefetch: int = 16
    """Most jobs sent ahead to each busy local worker (0: one job at a time); only jobs
    measured short enough that this many run in under 50 ms are sent ahead."""
    kill_grace_s: float = 2.0
    poison_limit: int = 3
    """A job whose worker is lost this many times ends ``error``."""
    live: bool | None = None
    """Live terminal display; default: when stdout is a terminal."""
