"""CloudHarness-style operations: tasks arranged as one, a pipeline, parallel or a DAG.

::

    from cryoflow.pyapi import operations
    from cryoflow.pyapi.operations import PythonTask, BashTask

    op = operations.ParallelOperation("test-parallel-op-", (PythonTask("p1", f),
                                                             PythonTask("p2", f)))
    run = op.execute()            # returns at once: run.name, run.status_url
    run.wait()

Asynchronous operations (:class:`SingleTaskOperation`, :class:`PipelineOperation`,
:class:`ParallelOperation`, :class:`SimpleDagOperation`) return an
:class:`OperationRun` at once, with the run's name and the URL of its status in the
REST API (served while the run lasts). Synchronous ones
(:class:`DistributedSyncOperation`, :class:`DistributedSyncOperationWithResults`)
block until the run ends and raise :class:`~cryoflow.pyapi.records.RunFailed` when it
failed; with ``timeout_s`` they return the unfinished record instead. The one "with
results" returns the files the tasks left in the (first) shared directory.

Each run is a workflow of its own named ``NAME`` + 5 random letters, with its state
folder ``ROOT/<run name>`` (``ROOT`` defaults to ``./.cryoflow/operations``), so the web
view, ``ccstatus --state`` and reports work on it as on any run. ``shared_directory``,
``ttl_strategy``, ``on_exit_notify`` and ``pod_context`` are described in
:mod:`cryoflow.pyapi.opsupport`.
"""

from __future__ import annotations

import functools
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryoflow.daemon.root import build_executor
from cryoflow.daemon.settings import RunSettings
from cryoflow.errors import ConfigError
from cryoflow.graph.flowgraph import nodes_graph
from cryoflow.graph.model import Graph, Node
from cryoflow.pyapi import images, opsupport
from cryoflow.pyapi.calls import forget_inline
from cryoflow.pyapi.opsupport import DEFAULT_TTL, PodExecutionContext, SharedDir
from cryoflow.pyapi.records import RunFailed, RunRecord, RunStatus
from cryoflow.pyapi.running import FlowRun, RunSpec
from cryoflow.pyapi.tasks import (
    BashTask,
    CommandBasedTask,
    Context,
    CustomTask,
    OperationTask,
    PythonTask,
    node_names,
)
from cryoflow.workers.base import Executor

DEFAULT_ROOT = Path(".cryoflow") / "operations"
CONTAINER_EXECUTORS = ("docker", "kubernetes")
_USE_DEFAULT: Any = object()


class OperationRun:
    """A started run: its ``name``, ``status_url`` and state folder; wait for or cancel it."""

    def __init__(self, name: str, run: FlowRun) -> None:
        self.name = name
        self._run = run
        self.status_url = run.status_url
        self.state_dir = run.spec.state_dir

    @property
    def status(self) -> RunStatus:
        return self.record().status

    def record(self) -> RunRecord:
        return self._run.record()

    def wait(self, timeout_s: float | None = None) -> RunRecord:
        """Wait up to ``timeout_s`` (None: until the end); the record as it is then."""
        return self._run.wait(timeout_s)

    def cancel(self) -> None:
        self._run.cancel()


class Operation:
    """Tasks, how they depend on each other, and the settings every task shares."""

    synchronous = False

    def __init__(
        self,
        name: str,
        *,
        shared_directory: str | Sequence[str] | None = None,
        ttl_strategy: Mapping[str, float] | None = _USE_DEFAULT,
        on_exit_notify: Mapping[str, Any] | None = None,
        pod_context: PodExecutionContext | None = None,
        root: str | Path | None = None,
        inline: bool = False,
        workers: int | None = None,
        container_executor: str = "docker",
        containers: Callable[[], Executor] | None = None,
        applications: str | Path | Sequence[str | Path] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("an operation needs a name (the prefix of its runs' names)")
        if container_executor not in CONTAINER_EXECUTORS:
            raise ConfigError(f"container_executor must be one of {CONTAINER_EXECUTORS}")
        self.name = name
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        self.shared = opsupport.shared_dirs(shared_directory, self.root)
        self.ttl = opsupport.check_ttl(DEFAULT_TTL if ttl_strategy is _USE_DEFAULT
                                       else ttl_strategy)
        self.on_exit_notify = opsupport.check_notify(on_exit_notify)
        self.pod_context = pod_context
        self.inline = inline
        self.workers = workers
        self.container_executor = container_executor
        self.containers = containers
        self.applications = images.application_roots(applications)

    def stages(self) -> list[list[OperationTask]]:
        """The tasks in stages: every task of a stage waits for all of the stage before."""
        raise NotImplementedError

    # ------------------------------------------------------------------ building

    def graph(self, run_name: str, context: Context) -> Graph:
        """The run's graph: one node per task, stages joined by barriers."""
        stages = self.stages()
        names = iter(node_names([t for stage in stages for t in stage]))
        nodes: list[Node] = []
        before: tuple[str, ...] = ()
        for stage in stages:
            current = [task.node(next(names), before, context) for task in stage]
            nodes += current
            before = tuple(n.name for n in current)
        return nodes_graph(nodes, name=run_name, source=f"operation {self.name!r}")

    def context(self) -> Context:
        pod = opsupport.pod_settings(self.pod_context) if self.pod_context else None
        return Context(shared=self.shared, pod=pod, inline=self.inline,
                       container_executor=self.container_executor)

    def run_name(self) -> str:
        suffix = "".join(secrets.choice(string.ascii_lowercase) for _ in range(5))
        return self.name + suffix if self.name.endswith("-") else f"{self.name}-{suffix}"

    # ------------------------------------------------------------------ running

    def start(self, *, serve: bool) -> OperationRun:
        """Check everything, then start one run on a background thread."""
        opsupport.prune_expired(self.root)
        context = self.context()
        context.default_commands = self._images()
        name = self.run_name()
        graph = self.graph(name, context)
        opsupport.prepare(self.shared)
        spec = RunSpec(graph=graph, state_dir=self.root / name, inline=self.inline,
                       workers=self.workers, serve=serve, containers=self._containers(graph))
        hooks = [lambda _r: forget_inline(context.inline_refs), self._ended]
        return OperationRun(name, FlowRun(spec, on_end=hooks).start())

    def execute(self, timeout_s: float | None = None) -> Any:
        """Start a run and return it at once (see the synchronous operations for more)."""
        return self.start(serve=True)

    def _images(self) -> dict[str, list[str]]:
        """Build the application images the tasks use; read the default commands."""
        if self.container_executor != "docker":
            return {}
        wanted = {(t.image, t.command is None) for stage in self.stages() for t in stage
                  if isinstance(t, CustomTask)}
        return images.prepare_images(sorted(wanted), self.applications) if wanted else {}

    def _ended(self, record: RunRecord) -> None:
        opsupport.write_run_file(Path(record.state_dir), {
            "name": record.workflow, "status": record.status.value,
            "finished": record.finished or time.time(),
            "ttl": None if self.ttl is None else dict(self.ttl)})
        if self.on_exit_notify is not None:
            message = {"status": "Succeeded" if record.status is RunStatus.FINISHED
                       else "Failed", "payload": self.on_exit_notify.get("payload"),
                       "workflow": record.workflow}
            opsupport.notify(self.on_exit_notify, message, self.root)
        if not self.keeps_shared_dirs:
            opsupport.remove_ephemeral(self.shared)

    keeps_shared_dirs = False
    """True when the operation reads the shared folders after the run (with results)."""

    def _containers(self, graph: Graph) -> Callable[[], Executor] | None:
        if not any(node.docker or node.image for node in graph):
            return None
        if self.containers is not None:
            return self.containers
        return functools.partial(build_executor, RunSettings(executor=self.container_executor))


def _tasks(tasks: OperationTask | Sequence[OperationTask]) -> list[OperationTask]:
    if isinstance(tasks, OperationTask):
        return [tasks]
    items = list(tasks)
    if not items:
        raise ConfigError("an operation needs at least one task")
    return items


class SingleTaskOperation(Operation):
    """One task."""

    def __init__(self, name: str, task: OperationTask, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.tasks = _tasks(task)[:1]

    def stages(self) -> list[list[OperationTask]]:
        return [self.tasks]


class PipelineOperation(Operation):
    """Tasks one after the other."""

    def __init__(self, name: str, tasks: Sequence[OperationTask], **settings: Any) -> None:
        super().__init__(name, **settings)
        self.tasks = _tasks(tasks)

    def stages(self) -> list[list[OperationTask]]:
        return [[task] for task in self.tasks]


class ParallelOperation(Operation):
    """Tasks at the same time."""

    def __init__(self, name: str, tasks: Sequence[OperationTask], **settings: Any) -> None:
        super().__init__(name, **settings)
        self.tasks = _tasks(tasks)

    def stages(self) -> list[list[OperationTask]]:
        return [self.tasks]


class SimpleDagOperation(Operation):
    """A pipeline of parallel groups: ``SimpleDagOperation(name, t1, (t2, t3), t4)``."""

    def __init__(self, name: str, *groups: OperationTask | Sequence[OperationTask],
                 **settings: Any) -> None:
        super().__init__(name, **settings)
        if not groups:
            raise ConfigError("a SimpleDagOperation needs at least one task")
        self.groups = [_tasks(group) for group in groups]

    def stages(self) -> list[list[OperationTask]]:
        return self.groups


class DistributedSyncOperation(PipelineOperation):
    """Runs its task (or tasks, one after the other) and waits for the end."""

    synchronous = True

    def __init__(self, name: str, tasks: OperationTask | Sequence[OperationTask],
                 **settings: Any) -> None:
        super().__init__(name, _tasks(tasks), **settings)

    def execute(self, timeout_s: float | None = None) -> Any:
        """The finished record; the unfinished one after ``timeout_s``; raise if it failed."""
        record = self.start(serve=False).wait(timeout_s)
        if record.status is RunStatus.FAILED:
            raise RunFailed(record)
        return record


class DistributedSyncOperationWithResults(DistributedSyncOperation):
    """Like :class:`DistributedSyncOperation`, and returns the files the tasks left.

    The result maps each file's path, relative to the first shared directory, to its
    content. Without a ``shared_directory`` an ephemeral one is made for the run.
    """

    keeps_shared_dirs = True

    def __init__(self, name: str, tasks: OperationTask | Sequence[OperationTask],
                 **settings: Any) -> None:
        settings.setdefault("shared_directory", f"results-{secrets.token_hex(4)}:/mnt/shared")
        super().__init__(name, tasks, **settings)

    def execute(self, timeout_s: float | None = None) -> Any:
        """``{relative path: bytes}`` of the shared directory; the record if unfinished."""
        try:
            record = super().execute(timeout_s)
        except RunFailed:
            opsupport.remove_ephemeral(self.shared)
            raise
        if record.status is RunStatus.RUNNING:
            return record
        files = opsupport.collect_files(self.shared)
        opsupport.remove_ephemeral(self.shared)
        return files


# The direct operations build on the ones above.
from cryoflow.pyapi.direct import (  # noqa: E402
    DataQueryOperation,
    DirectOperation,
    ResourceQueryOperation,
)

__all__ = [
    "BashTask",
    "CommandBasedTask",
    "CustomTask",
    "DataQueryOperation",
    "DirectOperation",
    "DistributedSyncOperation",
    "DistributedSyncOperationWithResults",
    "OperationRun",
    "ParallelOperation",
    "PipelineOperation",
    "PodExecutionContext",
    "PythonTask",
    "ResourceQueryOperation",
    "SharedDir",
    "SimpleDagOperation",
    "SingleTaskOperation",
]
