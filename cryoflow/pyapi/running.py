"""One run of a graph from Python: a head on its own thread, one pebble, a record.

:class:`FlowRun` opens the flow's state folder, starts a head (with the worker pool,
or threads of this process when ``inline``), offers one pebble to ``entry`` and lets
the head run it to the end on a background thread with its own event loop, so the
caller may wait, poll or walk away (an async operation). With ``serve`` the head's
web API and live view run too, and the run has a status URL. With ``track`` the
run's active record in ``flow.db`` follows every node (:class:`ActiveTracker`).

A run in the same state folder as a running one waits for nothing: the folder is
locked, and :class:`~cryoflow.errors.StoreLockedError` says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoflow.api.server import RouteTable, start_api
from cryoflow.daemon.root import build_executor, open_head, routed_executor
from cryoflow.daemon.settings import RunSettings
from cryoflow.engine.records import Action, NodeChanged, PebbleDone
from cryoflow.graph.grow import job_node
from cryoflow.graph.instances import is_instance
from cryoflow.graph.model import ENTRY, Graph, Outcome, empty_map
from cryoflow.head import Head
from cryoflow.pyapi.catalog import FlowCatalog
from cryoflow.pyapi.records import NodeStatus, RunRecord, record_of
from cryoflow.store.guard import DB_NAME
from cryoflow.store.reader import StoreReader
from cryoflow.workers.base import Executor
from cryoflow.workers.routing import ExternalQueue, RoutingExecutor

log = logging.getLogger("cryoflow.pyapi")

START_TIMEOUT_S = 120.0
"""How long :meth:`FlowRun.start` waits for the workers and the first commit."""


@dataclass(frozen=True)
class RunSpec:
    """What to run and how."""

    graph: Graph
    state_dir: Path
    inline: bool = False
    workers: int | None = None
    item: Mapping[str, Any] = field(default_factory=empty_map)
    serve: bool = False
    """Start the web API and live view for the run (gives it a status URL)."""
    track: bool = False
    """Keep the run's active record in the state folder's ``flow.db``."""
    executor: Callable[[], Executor] | None = None
    """Builds the executor instead of the worker pool or the inline threads."""
    containers: Callable[[], Executor] | None = None
    """Builds the executor for nodes with ``docker`` or ``image`` (Docker, Kubernetes)."""
    external: ExternalQueue | None = None
    """Where tasks for external executors (nodes with an ``executortype``) wait."""
    routes: Sequence[RouteTable] = ()
    """Route tables of layers above, served beside the web API when ``serve``."""


def run_settings(inline: bool, workers: int | None) -> RunSettings:
    """Threads of this process (``inline``) or a pool of worker processes."""
    if inline:
        return RunSettings(executor="inline", workers=workers)
    return RunSettings(executor="local", workers=workers or min(4, os.cpu_count() or 1),
                       admin_workers=0, gpus=0, prefetch=0)


class FlowRun:
    """A run on a background thread: ``start()``, then ``wait()``, ``record()``, ``cancel()``."""

    def __init__(self, spec: RunSpec, *,
                 on_end: Sequence[Callable[[RunRecord], None]] = ()) -> None:
        self.spec = spec
        self.on_end = tuple(on_end)
        self.run_id: int | None = None
        self.api_url: str | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._final: RunRecord | None = None
        self._head: Head | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=False,
                                        name=f"cryoflow-run-{spec.graph.name}")

    # ------------------------------------------------------------------ caller side

    def start(self, timeout_s: float = START_TIMEOUT_S) -> FlowRun:
        """Start the run; return once its pebble is committed (raise if it cannot start)."""
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"the run of {self.spec.graph.name} did not start within "
                               f"{timeout_s:g}s")
        if self._error is not None and self.run_id is None:
            self._thread.join()
            raise self._error
        return self

    def wait(self, timeout_s: float | None = None) -> RunRecord:
        """Wait up to ``timeout_s`` (None: until the end); return the record as it is then."""
        self._thread.join(timeout_s)
        if not self._thread.is_alive() and self._error is not None:
            raise self._error
        return self.record()

    @property
    def done(self) -> bool:
        return self._final is not None

    @property
    def status_url(self) -> str | None:
        """The run's pebble in the REST API, while the run serves it."""
        if self.api_url is None or self.run_id is None:
            return None
        return f"{self.api_url}api/v1/pebbles/{self.run_id}"

    def record(self) -> RunRecord:
        """The run's record now (read from the store while it runs)."""
        if self._final is not None:
            return self._final
        assert self.run_id is not None and self._head is not None, "start() the run first"
        with StoreReader(Path(self.spec.state_dir) / DB_NAME) as reader:
            return self._record(reader, self._head.graph)

    def cancel(self) -> None:
        """Cancel the run: queued nodes never start, running jobs are cancelled."""
        if self._loop is not None and self._head is not None and self.run_id is not None:
            self._loop.call_soon_threadsafe(self._head.cancel_pebble, self.run_id,
                                            "cancelled from Python")

    # ------------------------------------------------------------------ the run's thread

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the caller by start() or wait()
            self._error = exc
            log.debug("run of %s ended with %r", self.spec.graph.name, exc)
        finally:
            self._started.set()
        if self._final is not None:
            for hook in self.on_end:
                _call_hook(hook, self._final)

    async def _main(self) -> None:
        spec = self.spec
        tracker = ActiveTracker(FlowCatalog(spec.state_dir)) if spec.track else None
        try:
            head = self._head = open_head(spec.graph, spec.state_dir, self._executor(tracker))
            store = head.store
        except BaseException:
            if tracker is not None:
                tracker.catalog.close()
            raise
        try:
            if tracker is not None:
                tracker.head = head
                head.listeners.append(tracker)
            await self._run(head)
            self._final = self._record(store, head.graph)
        finally:
            store.close()
            if tracker is not None:
                tracker.catalog.close()

    def _executor(self, tracker: ActiveTracker | None) -> RoutingExecutor:
        spec = self.spec
        inner = (spec.executor() if spec.executor
                 else build_executor(run_settings(spec.inline, spec.workers)))
        containers = spec.containers() if spec.containers else None
        return routed_executor(inner, containers=containers, external=spec.external,
                               on_started=tracker.started if tracker is not None else None)

    async def _run(self, head: Head) -> None:
        self._loop = asyncio.get_running_loop()
        await head.start()
        server = None
        try:
            if self.spec.serve:
                server = await start_api(head, extra_routes=self.spec.routes)
                self.api_url = server.url
            self.run_id = await head.offer(ENTRY, dict(self.spec.item))
            self._started.set()
            await head.wait_idle()
        finally:
            if server is not None:
                await server.stop()
            await head.stop()

    def _record(self, store: Any, graph: Graph) -> RunRecord:
        assert self.run_id is not None
        pebble = store.pebble(self.run_id)
        running = [j["node"] for j in store.jobs(pebble_id=self.run_id, state="running")]
        return record_of(graph, pebble, running, state_dir=str(self.spec.state_dir),
                         status_url=self.status_url)


def _call_hook(hook: Callable[[RunRecord], None], record: RunRecord) -> None:
    try:
        hook(record)
    except Exception:
        log.exception("an end-of-run hook failed for run %s of %s", record.run_id,
                      record.workflow)


class ActiveTracker:
    """Keeps the active records of ``flow.db`` in step with the head (a head listener)."""

    def __init__(self, catalog: FlowCatalog) -> None:
        self.catalog = catalog
        self.head: Head | None = None
        self._runs: set[int] = set()

    def __call__(self, action: Action) -> None:
        try:
            if isinstance(action, NodeChanged) and not is_instance(action.node):
                self._changed(action)
            elif isinstance(action, PebbleDone):
                self._ensure(action.pebble_id)
                self.catalog.end_run(action.pebble_id, "finished" if action.outcome == "completed"
                                     else "failed")
        except Exception:
            log.exception("cannot update the active record for %s", type(action).__name__)

    def started(self, job_id: str) -> None:
        """A node's job started: it is ``running``."""
        pebble_id = int(job_id.split("/", 1)[0])
        self._ensure(pebble_id)
        self.catalog.set_status(pebble_id, job_node(job_id), NodeStatus.RUNNING.value)

    def _ensure(self, pebble_id: int) -> None:
        if pebble_id in self._runs or self.head is None:
            return
        self._runs.add(pebble_id)
        nodes = {n.name: tuple(p for p in n.parents if p != ENTRY) for n in self.head.graph}
        self.catalog.start_run(pebble_id, nodes)

    def _changed(self, action: NodeChanged) -> None:
        self._ensure(action.pebble_id)
        state = action.state
        if state.status != "done":
            return
        output = state.output
        result = output.get("result", output) if isinstance(output, Mapping) else output
        status = (NodeStatus.FINISHED if state.outcome is Outcome.SUCCESS
                  else NodeStatus.SKIPPED if state.outcome is Outcome.SKIPPED
                  else NodeStatus.ERROR)
        self.catalog.set_status(action.pebble_id, action.node, status.value, result=result,
                                error=state.error)
