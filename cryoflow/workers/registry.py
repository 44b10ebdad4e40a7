"""Executor names → implementations, imported only when asked for.

``local`` and ``inline`` need nothing beyond cryoflow; ``dask``, ``docker`` and
``kubernetes`` need an extra, and asking for one that is not installed fails with
:class:`WorkerError` and the line that installs it (``pip install 'cryoflow[dask]'``),
never at import of cryoflow.

The ``make_*_executor(settings)`` factories build an executor from :class:`RunSettings`
(``--executor dask --scheduler URL``, ``--kubernetes``); options the command line does
not carry come from the config tree under ``docker`` and ``kubernetes``
(``{"kubernetes": {"namespace": "jobs", "image": "…", "ttl_s": 600}}``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from cryoflow.daemon.settings import RunSettings
from cryoflow.errors import WorkerError
from cryoflow.graph.model import WorkerClass
from cryoflow.workers.base import Executor


@dataclass(frozen=True)
class _Entry:
    module: str
    attribute: str
    extra: str | None = None
    """The pip extra that installs what the module imports."""
    needs: str | None = None
    """The top-level package the extra provides."""


EXECUTORS: Mapping[str, _Entry] = {
    "local": _Entry("cryoflow.workers.local", "LocalExecutor"),
    "inline": _Entry("cryoflow.workers.inline", "InlineExecutor"),
    "dask": _Entry("cryoflow.workers.dask", "DaskExecutor", "dask", "distributed"),
    "docker": _Entry("cryoflow.workers.docker", "DockerExecutor", "docker", "docker"),
    "kubernetes": _Entry(
        "cryoflow.workers.kubernetes", "KubernetesExecutor", "kubernetes", "kubernetes"
    ),
}


def install_hint(name: str) -> str | None:
    """``pip install 'cryoflow[dask]'`` for an executor that needs an extra."""
    entry = EXECUTORS.get(name)
    return f"pip install 'cryoflow[{entry.extra}]'" if entry and entry.extra else None


def load(name: str, attribute: str | None = None) -> Any:
    """The executor class (or another ``attribute``) of executor ``name``'s module."""
    entry = EXECUTORS.get(name)
    if entry is None:
        raise WorkerError(f"unknown executor {name!r}; use one of {', '.join(sorted(EXECUTORS))}")
    try:
        module = importlib.import_module(entry.module)
    except ModuleNotFoundError as exc:
        if entry.needs and (exc.name or "").split(".")[0] == entry.needs:
            raise WorkerError(
                f"the {name} executor needs the '{entry.needs}' package: {install_hint(name)}"
            ) from exc
        raise
    return getattr(module, attribute or entry.attribute)


def make_executor(settings: RunSettings) -> Executor:
    """The executor ``settings`` ask for: ``--executor NAME``, or ``--kubernetes``."""
    name = "kubernetes" if settings.kubernetes else settings.executor
    factory = _FACTORIES.get(name)
    if factory is None:
        raise WorkerError(
            f"executor {name!r} cannot be built from run settings; "
            f"use one of {', '.join(sorted(_FACTORIES))}"
        )
    return factory(settings)


def make_dask_executor(settings: RunSettings) -> Executor:
    """``--executor dask [--scheduler tcp://HOST:8786]`` (a LocalCluster without one)."""
    options = load("dask", "DaskOptions")
    local = {"normal": settings.workers or 1, "admin": settings.admin_workers}
    if settings.gpus:
        local["gpu"] = settings.gpus
    executor: Executor = load("dask")(
        options(
            scheduler=settings.scheduler,
            local_resources=local,
            kill_grace_s=settings.kill_grace_s,
        )
    )
    return executor


def make_docker_executor(settings: RunSettings) -> Executor:
    """Every job in a container; ``config["docker"]`` holds :class:`DockerOptions` fields."""
    options = _options(load("docker", "DockerOptions"), settings, "docker")
    executor: Executor = load("docker")(options, slots=_slots(settings), gpus=settings.gpus or 0)
    return executor


def make_kubernetes_executor(settings: RunSettings) -> Executor:
    """``--kubernetes``; ``config["kubernetes"]`` holds :class:`KubernetesOptions` fields."""
    options = _options(load("kubernetes", "KubernetesOptions"), settings, "kubernetes")
    slots = _slots(settings) if settings.workers is not None else None
    executor: Executor = load("kubernetes")(options, slots=slots)
    return executor


def _make_local(settings: RunSettings) -> Executor:
    executor: Executor = load("local")(
        workers=settings.workers,
        admin_workers=settings.admin_workers,
        gpus=settings.gpus or 0,
        max_jobs_per_worker=settings.max_jobs_per_worker,
        max_worker_memory_mb=settings.max_worker_memory_mb,
        kill_grace_s=settings.kill_grace_s,
    )
    return executor


_FACTORIES: Mapping[str, Callable[[RunSettings], Executor]] = {
    "local": _make_local,
    "dask": make_dask_executor,
    "docker": make_docker_executor,
    "kubernetes": make_kubernetes_executor,
}


def _options(cls: Any, settings: RunSettings, section: str) -> Any:
    """``cls(**config[section])``, refusing keys ``cls`` does not have with a sentence."""
    given = dict(settings.config.get(section) or {})
    given.setdefault("kill_grace_s", settings.kill_grace_s)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise WorkerError(
            f"unknown {section} settings {', '.join(unknown)} in the config; "
            f"known: {', '.join(sorted(known))}"
        )
    if isinstance(given.get("command"), list):
        given["command"] = tuple(given["command"])
    return cls(**given)


def _slots(settings: RunSettings) -> dict[WorkerClass, int]:
    workers = settings.workers if settings.workers is not None else os.cpu_count() or 1
    return {WorkerClass.NORMAL: workers, WorkerClass.ADMIN: settings.admin_workers}
