"""The composition root: the one place that opens a state store, builds executors and a head.

Every way of running a graph comes through here: ``ccworkflow``
(:mod:`cryoflow.cli.run`), the Python flows and operations
(:mod:`cryoflow.pyapi.running`), ``cryoflow flow view``, and the function-spec workflows
and ``cryoflow serve`` of the ColonyOS layer (:mod:`cryoflow.colony`).

- :func:`build_executor` is the one executor factory: ``local``, ``inline``, ``dask``,
  ``docker`` or ``kubernetes`` from :class:`RunSettings` (the classes are looked up
  lazily in :mod:`cryoflow.workers.registry`, so a missing extra fails with the line
  that installs it).
- :func:`routed_executor` puts a :class:`~cryoflow.workers.routing.RoutingExecutor` in
  front: containers for ``docker`` nodes, an external queue for ``executortype`` nodes
  (given by a layer above, only when the graph has such nodes), and graph growth;
  :func:`daemon_executor` is the whole wiring of a ``ccworkflow`` run.
- :func:`open_head` opens the store and builds the :class:`Head`; :func:`close_head`
  stops it and closes the store; :func:`running_head` does both around a block.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from cryoflow.daemon.settings import RunSettings
from cryoflow.errors import CryoflowError, WorkerError
from cryoflow.graph.grow import child_node, grow_graph, job_node
from cryoflow.graph.model import Graph, WorkerClass
from cryoflow.head import Head
from cryoflow.store import Store
from cryoflow.store.runs import NodeShapes
from cryoflow.workers import registry
from cryoflow.workers.base import Executor, JobSink
from cryoflow.workers.onhead import with_on_head
from cryoflow.workers.routing import ExternalQueue, RoutingExecutor

# ----------------------------------------------------------------------------- executors


def build_executor(settings: RunSettings) -> Executor:
    """The executor ``settings`` ask for: ``--executor NAME``, or ``--kubernetes``."""
    name = "kubernetes" if settings.kubernetes else settings.executor
    factory = _FACTORIES.get(name)
    if factory is None:
        raise WorkerError(f"unknown executor {name!r}; use one of {', '.join(sorted(_FACTORIES))}")
    return factory(settings)


def detect_gpus() -> int:
    """GPUs this machine has: from CUDA_VISIBLE_DEVICES, else ``nvidia-smi -L``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def _local(settings: RunSettings) -> Executor:
    """Worker processes on this machine (GPUs detected unless ``--gpus`` says)."""
    gpus = settings.gpus if settings.gpus is not None else detect_gpus()
    executor: Executor = registry.load("local")(
        workers=settings.workers, admin_workers=settings.admin_workers, gpus=gpus,
        max_jobs_per_worker=settings.max_jobs_per_worker,
        max_worker_memory_mb=settings.max_worker_memory_mb,
        kill_grace_s=settings.kill_grace_s, prefetch=settings.prefetch,
    )
    return executor


def _inline(settings: RunSettings) -> Executor:
    """Threads of this process (``workers`` normal slots, default 4)."""
    slots = {WorkerClass.NORMAL: settings.workers or 4, WorkerClass.ADMIN: 1}
    executor: Executor = registry.load("inline")(slots=slots)
    return executor


def _dask(settings: RunSettings) -> Executor:
    """``--executor dask [--scheduler tcp://HOST:8786]`` (a LocalCluster without one)."""
    options = registry.load("dask", "DaskOptions")
    local = {"normal": settings.workers or 1, "admin": settings.admin_workers}
    if settings.gpus:
        local["gpu"] = settings.gpus
    executor: Executor = registry.load("dask")(options(
        scheduler=settings.scheduler, local_resources=local,
        kill_grace_s=settings.kill_grace_s))
    return executor


def _docker(settings: RunSettings) -> Executor:
    """Every job in a container; ``config["docker"]`` holds :class:`DockerOptions` fields."""
    options = _options(registry.load("docker", "DockerOptions"), settings, "docker")
    executor: Executor = registry.load("docker")(options, slots=_slots(settings),
                                                 gpus=settings.gpus or 0)
    return executor


def _kubernetes(settings: RunSettings) -> Executor:
    """``--kubernetes``; ``config["kubernetes"]`` holds :class:`KubernetesOptions` fields."""
    options = _options(registry.load("kubernetes", "KubernetesOptions"), settings, "kubernetes")
    slots = _slots(settings) if settings.workers is not None else None
    executor: Executor = registry.load("kubernetes")(options, slots=slots)
    return executor


_FACTORIES: Mapping[str, Callable[[RunSettings], Executor]] = {
    "local": _local, "inline": _inline, "dask": _dask, "docker": _docker,
    "kubernetes": _kubernetes,
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


def has_external_nodes(graph: Graph) -> bool:
    """Does ``graph`` have nodes for external executors (an ``executortype``)?"""
    return any(node.extra.get("executortype") for node in graph)


def routed_executor(
    inner: Executor,
    *,
    containers: Executor | None = None,
    external: ExternalQueue | None = None,
    on_started: Callable[[str], None] | None = None,
    route_images: bool = True,
) -> RoutingExecutor:
    """``inner`` behind a router: containers, external executors, graph growth."""
    return RoutingExecutor(inner, containers=containers, external=external,
                           on_started=on_started, on_grow=grow_head,
                           route_images=route_images)


def daemon_executor(graph: Graph, settings: RunSettings,
                    external: ExternalQueue | None = None) -> Executor:
    """The executor of a ``ccworkflow`` run: the one ``settings`` name, behind a router.

    ``docker`` nodes go to containers (``image`` nodes are for ``--kubernetes``);
    ``executortype`` jobs wait in ``external`` for external executors, only when the graph
    has such nodes; jobs may grow the graph; ``runOnHead`` nodes run on the head.
    """
    containers = None
    if any(n.docker for n in graph) and settings.executor == "local" and not settings.kubernetes:
        containers = build_executor(replace(settings, executor="docker"))
    routed = routed_executor(build_executor(settings), containers=containers,
                             external=external if has_external_nodes(graph) else None,
                             route_images=False)
    return with_on_head(routed, graph)


# ----------------------------------------------------------------------------- growth


def grow_head(head: JobSink, job_id: str, request: Mapping[str, Any]) -> str | None:
    """Grow the graph of the head running ``job_id``; None when done, else why not."""
    if not isinstance(head, Head):
        return "this run cannot grow its graph"
    if not head.engine.is_current(job_id):
        return f"job {job_id} is not running, so it cannot add children"
    spec = request.get("spec")
    if not isinstance(spec, Mapping):
        return "send the new node as a function spec under 'spec'"
    try:
        grown = grow_graph(head.graph, job_node(job_id), child_node(spec, job_node(job_id)),
                           insert=bool(request.get("insert")))
    except CryoflowError as exc:
        return str(exc)
    head.replace_graph(grown)
    return None


# ----------------------------------------------------------------------------- the head


def open_head(graph: Graph, state_dir: str | Path, executor: Executor, *,
              fresh: bool = False, **head_options: Any) -> Head:
    """Open ``state_dir``'s store and build the head that runs ``graph`` on ``executor``.

    ``head_options`` are :class:`Head`'s keyword arguments (options, config, ...). The
    head owns the store from here on: :func:`close_head` closes it.
    """
    store = Store.open(Path(state_dir), workflow=graph.name, fresh=fresh)
    try:
        store.record_shapes(NodeShapes.of(graph))
        return Head(graph, store=store, executor=executor, **head_options)
    except BaseException:
        store.close()
        raise


async def close_head(head: Head, timeout_s: float = 10.0) -> None:
    """Stop ``head`` (if it started) and close its store."""
    try:
        await head.stop(timeout_s)
    finally:
        head.store.close()


@contextlib.asynccontextmanager
async def running_head(graph: Graph, state_dir: str | Path, executor: Executor,
                       **head_options: Any) -> AsyncIterator[Head]:
    """A started head for the block; stopped, with its store closed, after it."""
    head = open_head(graph, state_dir, executor, **head_options)
    try:
        await head.start()
    except BaseException:
        head.store.close()
        raise
    try:
        yield head
    finally:
        await close_head(head)
