"""Executor names → implementations, imported only when asked for.

``local`` and ``inline`` need nothing beyond cryoflow; ``dask``, ``docker`` and
``kubernetes`` need an extra, and asking for one that is not installed fails with
:class:`WorkerError` and the line that installs it (``pip install 'cryoflow[dask]'``),
never at import of cryoflow.

:func:`cryoflow.daemon.root.build_executor` builds executors from run settings with
the classes found here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryoflow.errors import WorkerError


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
