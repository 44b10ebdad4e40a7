"""``ccworkflow GRAPH``: open the state folder, start workers and inputs, run, report.

Exit codes: 0 every pebble completed, 1 some pebble failed, 2 invalid input (graph,
options, state folder) or an input that could not run, 130 after Ctrl-C (running jobs
cancelled, state saved; 0 or 1 when Ctrl-C ends ``--stay`` after the work was done).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

from cryoflow.api.server import RouteTable, start_api
from cryoflow.cli.display import show_progress
from cryoflow.cli.report import write_report
from cryoflow.cli.summary import Pointers, print_summary
from cryoflow.cli.tally import RunTally
from cryoflow.colony.queue import ColonyQueue
from cryoflow.colony.routes import route_table
from cryoflow.daemon.inputs import InputRunner, offer_unless_unfinished
from cryoflow.daemon.root import daemon_executor, open_head
from cryoflow.daemon.settings import RunSettings
from cryoflow.errors import CryoflowError
from cryoflow.failpoints import Failpoints
from cryoflow.graph.model import ENTRY, Graph
from cryoflow.head import Head, missing_classes
from cryoflow.store import Store
from cryoflow.store.runs import NodeShapes

log = logging.getLogger("cryoflow")

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def default_state_dir(graph: Graph) -> Path:
    """``./.cryoflow/<workflow-name>/`` with the name made safe for a folder."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", graph.name).strip("-.") or "workflow"
    return Path(".cryoflow") / slug


def run_workflow(graph: Graph, options: Mapping[str, Any], settings: RunSettings) -> int:
    """Run ``graph`` until its inputs are done (singlerun) or it is stopped."""
    _setup_logging(settings.loglevel)
    try:
        return asyncio.run(_run(graph, dict(options), settings))
    except CryoflowError as exc:
        print(f"ccworkflow: {exc}", file=sys.stderr)
        return EXIT_INVALID


async def _run(graph: Graph, options: dict[str, Any], settings: RunSettings) -> int:
    await _check_services(graph)
    state_dir = settings.state_dir or default_state_dir(graph)
    held = _what_fresh_discards(state_dir) if settings.fresh else None
    queue = ColonyQueue()
    executor = daemon_executor(graph, settings, queue)
    problems = missing_classes(graph, executor.capacity())
    if problems and settings.executor != "dask":  # Dask: checked once connected
        raise CryoflowError("; ".join(problems))
    head = open_head(graph, state_dir, executor, fresh=settings.fresh, options=options,
                     config=settings.config, module_paths=tuple(map(str, settings.module_paths)),
                     poison_limit=settings.poison_limit,
                     failpoints=Failpoints.from_env(os.environ), use_cache=not settings.nocache)
    if held is not None:  # said only once the folder is ours: a running head refuses
        print(f"ccworkflow: --fresh: set aside {state_dir}/state.db ({held}); "
              "it is kept as a .bak file", file=sys.stderr)
    try:
        return await _run_head(head, options, settings, route_table(queue))
    finally:
        head.store.close()


async def _run_head(head: Head, options: dict[str, Any], settings: RunSettings,
                    routes: RouteTable) -> int:
    graph, store = head.graph, head.store
    run = _Run(head, InputRunner(head, graph, options, settings.config), settings, routes)
    tally = RunTally(shapes=NodeShapes.of(graph))
    head.listeners.append(tally)
    live = settings.live if settings.live is not None else sys.stdout.isatty()
    console = _live_console() if live else None
    display = asyncio.ensure_future(show_progress(head, tally, console))

    async def finish(url: str | None) -> None:
        display.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await display
        if settings.report_path is not None:
            write_report(store, graph, settings.report_path)
        if run.inputs.errors and not tally.finished:
            return  # the input's error is the whole story
        state_dir = settings.state_dir or default_state_dir(graph)
        print_summary(console or Console(highlight=False), tally, graph, store,
                      Pointers(state_dir, settings.report_path, url,
                               served=settings.http is not None))

    run.on_done = finish
    await run.execute()
    return run.exit_code()


async def _check_services(graph: Graph) -> None:
    """Fetch each ``serviceURL``'s definition and check the node's args against it."""
    if not any(node.service_url for node in graph):
        return
    from cryoflow.workers.services import check_services

    checked = await asyncio.to_thread(check_services, graph)
    for line in checked.warnings:
        log.warning("%s", line)
    if checked.errors:
        raise CryoflowError("; ".join(checked.errors))


async def _await_dask_workers(head: Head, settings: RunSettings) -> None:
    """The cluster has a worker of each class the graph needs (``ccnode -a 1`` for admin
    nodes), or the run stops saying which to start (after ``dask.workers_timeout_s``)."""
    from cryoflow.workers.dask import await_worker_classes

    needed: dict[Any, list[str]] = {}
    for node in head.graph:
        if not node.is_input:
            needed.setdefault(node.needs, []).append(node.name)
    section = settings.config.get("dask")
    timeout_s = float(section.get("workers_timeout_s", 30)) if isinstance(section, dict) else 30.0
    where = settings.scheduler or "the LocalCluster"
    await await_worker_classes(needed, head.executor.capacity, where, timeout_s)


def _live_console() -> Console:
    """The terminal's console; log lines go through it so they print above the view."""
    console = Console(highlight=False)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(RichHandler(console=console, show_path=False, markup=False))
    return console


class _Run:
    """One run of the head: inputs, the wait, signals and shutdown."""

    def __init__(self, head: Head, inputs: InputRunner, settings: RunSettings,
                 routes: RouteTable) -> None:
        self.head = head
        self.inputs = inputs
        self.settings = settings
        self.routes = routes
        self.signal: int | None = None
        self._stop = asyncio.Event()
        self.on_done: Callable[[str | None], Awaitable[None]] | None = None
        """Called once the work is done (the summary); the web view still serves."""
        self.stayed = False

    async def execute(self) -> None:
        loop = asyncio.get_running_loop()
        await self.head.start()
        if self.settings.executor == "dask":
            await _await_dask_workers(self.head, self.settings)
        api = await _start_http(self.head, self.settings, self.routes)
        self._install_signals(loop)
        try:
            self.inputs.start(loop)
            if not self.head.graph.input_nodes:  # one pebble of the options, keyed by them
                await offer_unless_unfinished(self.head, ENTRY, dict(self.head.options))
            await self._wait()
            await self._done(api)
        finally:
            self.inputs.stop()
            if api is not None:
                await api.stop()
            await self.head.stop(timeout_s=10.0)
            self._remove_signals(loop)
            if self.on_done is not None:  # stopped early: still say what was done
                await self.on_done(None)

    async def _done(self, api: Any) -> None:
        stay = (self.settings.stay and api is not None and self.signal is None
                and not self.inputs.errors)
        if self.on_done is not None:
            await self.on_done(api.url if stay else None)
            self.on_done = None
        if stay:
            print("ccworkflow: the web view stays open; Ctrl-C ends it", file=sys.stderr,
                  flush=True)
            self.stayed = True
            await self._stop.wait()

    async def _wait(self) -> None:
        while not self._stop.is_set():
            if self.inputs.errors or self.head.fatal:  # either ends the run at once
                return
            if self.inputs.all_singlerun and self.inputs.finished:
                idle = asyncio.ensure_future(self.head.wait_idle())
                stop = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait({idle, stop}, return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
                stop.cancel()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.1)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self.signal is not None:
            log.warning("second signal: exiting at once")
            os._exit(EXIT_INTERRUPTED)
        self.signal = signum
        log.info("stopping: running jobs are cancelled, queued work stays in the store")
        self._stop.set()

    def exit_code(self) -> int:
        if self.signal == signal.SIGINT and not self.stayed:  # Ctrl-C after --stay: done
            return EXIT_INTERRUPTED
        if self.head.fatal is not None:
            print(f"ccworkflow: the head stopped: {self.head.fatal} (unfinished pebbles stay "
                  "in the state folder)", file=sys.stderr)
            return EXIT_INVALID
        if self.inputs.errors:
            for error in self.inputs.errors:
                print(f"ccworkflow: {error}; the head stopped (unfinished pebbles stay "
                      "in the state folder)", file=sys.stderr)
            return EXIT_INVALID
        return EXIT_FAILED if self.head.counts.failed else EXIT_OK


async def _start_http(head: Head, settings: RunSettings, routes: RouteTable) -> Any:
    """Start the API and web view (with the ColonyOS routes) unless ``--no-http``."""
    if not settings.http:
        return None
    host, _, port = settings.http.rpartition(":")
    token = settings.http_token or os.environ.get("CRYOFLOW_API_TOKEN")
    admin = settings.admin_token or os.environ.get("CRYOFLOW_ADMIN_TOKEN") or token
    server = await start_api(head, host=host or "127.0.0.1", port=int(port or 0), token=token,
                             admin_token=admin, extra_routes=[routes])
    print(f"ccworkflow: web view and API at {server.url}", file=sys.stderr, flush=True)
    return server


def _what_fresh_discards(state_dir: Path) -> str | None:
    """What the state folder holds, said before ``--fresh`` sets it aside (None: nothing)."""
    if not (state_dir / "state.db").exists():
        return None
    counts = Store.describe(state_dir)
    return ", ".join(f"{n} {key.replace('_', ' ')[:-1] if n == 1 else key.replace('_', ' ')}"
                     for key, n in counts.items())


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
