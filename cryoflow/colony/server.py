"""A head that only accepts function-spec workflows and serves external executors.

``cryoflow serve`` and :class:`ColonyServer` start it: a head on a background thread
with the REST API of :mod:`cryoflow.colony.routes` (``POST /api/v1/workflows``,
executors, processes) on 127.0.0.1, like a ColonyOS server. Each submitted workflow
runs on a head of its own, with its state under ``STATE/workflows/ID``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from cryoflow.api.auth import Tokens
from cryoflow.api.server import build_app, build_context, check_bind
from cryoflow.colony.queue import ColonyQueue
from cryoflow.colony.routes import route_table
from cryoflow.daemon.root import build_executor, running_head
from cryoflow.daemon.settings import RunSettings
from cryoflow.graph.flowgraph import nodes_graph
from cryoflow.graph.model import Node

READY_TIMEOUT_S = 30.0


def intake_graph() -> Any:
    """The serving head's own graph: one node that nothing ever reaches."""
    return nodes_graph([Node(name="workflows", module="noop")], name="workflows")


class ColonyServer:
    """``with ColonyServer(state_dir) as server:`` serves on ``server.url`` until the block ends."""

    def __init__(self, state_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, admin_token: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.host, self.port = host, port
        self.tokens = (token, admin_token)
        self.url: str | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="cryoflow-colony-server")

    def __enter__(self) -> ColonyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ColonyServer:
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_S) or self._error is not None:
            self._thread.join(READY_TIMEOUT_S)
            raise self._error or TimeoutError("the server did not start in time")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(READY_TIMEOUT_S)

    def wait(self) -> None:
        """Serve until :meth:`stop` (or Ctrl-C in the caller)."""
        self._thread.join()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        tokens = Tokens(read=self.tokens[0], admin=self.tokens[1])
        check_bind(self.host, tokens)
        queue = ColonyQueue()
        executor = build_executor(RunSettings(executor="inline", workers=2))  # runs nothing
        async with running_head(intake_graph(), self.state_dir, executor) as head:
            context = build_context(head, tokens)
            runner = web.AppRunner(build_app(context, [route_table(queue)]), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, self.port).start()
                host, port = runner.addresses[0][:2]
                self.url = f"http://{host}:{port}/"
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
                self._ready.set()
                await self._stop.wait()
            finally:
                await runner.cleanup()
