"""A head with the HTTP service on loopback, for the API, web view and tool tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from enginekit import graph, node

from cryoflow.api.server import ApiServer, start_api
from cryoflow.colony.routes import route_table
from cryoflow.graph.model import Graph, Node
from cryoflow.head import Head
from cryoflow.store import Store
from cryoflow.workers.inline import InlineExecutor

GATE = str(Path(__file__).parent / "data" / "web_modules" / "gate.py")
READ_TOKEN = "read-token-0123456789"
ADMIN_TOKEN = "admin-token-9876543210"
T = TypeVar("T")


def gate(name: str, parents: tuple[str, ...], run_on: str = "success", source: str = "In",
         **args: Any) -> Node:
    """A node that waits for ``<source>.gate`` (a file) and echoes its other arguments."""
    spec = {"x": {"output": f"{source}.x", "default": None},
            "gate": {"output": f"{source}.gate", "default": None},
            "fail": {"output": f"{source}.fail", "default": False},
            "label": {"output": f"{source}.label", "default": None}, **args}
    return node(name, parents, module="gate", module_ref=GATE, args=spec, run_on=run_on)


def chain() -> Graph:
    """``In → A → B``; B runs only when A succeeds."""
    return graph(node("In", module="cmdline"), gate("A", ("In",)),
                 gate("B", ("A",), x={"output": "parent.x", "default": None}, fail=False,
                      gate=None))


@dataclass
class Served:
    """A running head with its API, a client session, and the state folder."""

    head: Head
    api: ApiServer
    session: aiohttp.ClientSession
    state: Path

    @property
    def url(self) -> str:
        return self.api.url

    async def offer(self, **item: Any) -> int:
        return await self.head.offer(self.head.graph.input_nodes[0].name, item)

    async def idle(self, timeout_s: float = 20) -> None:
        await asyncio.wait_for(self.head.wait_idle(), timeout_s)

    async def get(self, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(self.url + path.lstrip("/"), headers=headers, **kw) as r:
            body = await (r.json() if r.content_type == "application/json" else r.text())
            return r.status, body

    async def post(self, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.post(self.url + path.lstrip("/"), json=body or {},
                                     headers=headers) as r:
            return r.status, await r.json()


@asynccontextmanager
async def served(state: Path, g: Graph | None = None, *, token: str | None = None,
                 admin_token: str | None = None) -> AsyncIterator[Served]:
    """Start a head on ``state`` with the inline executor and the API on 127.0.0.1."""
    g = g or chain()
    store = Store.open(state, workflow=g.name)
    head = Head(g, store=store, executor=InlineExecutor())
    await head.start()
    api = await start_api(head, token=token, admin_token=admin_token,
                          extra_routes=[route_table()])
    session = aiohttp.ClientSession()
    try:
        yield Served(head, api, session, state)
    finally:
        await session.close()
        await api.stop()
        await head.stop()
        store.close()


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Wait until ``check()`` is true, polling every 20 ms."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the condition did not become true in time")
        await asyncio.sleep(0.02)


class LoopThread:
    """An event loop in a thread, for synchronous tests (schemathesis, Playwright)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-test-loop")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ServedInThread:
    """:func:`served` kept open in a :class:`LoopThread` until :meth:`close`."""

    def __init__(self, state: Path, g: Graph | None = None, **tokens: Any) -> None:
        self.thread = LoopThread()
        self._context = served(state, g, **tokens)
        self.served: Served = self.thread.run(self._context.__aenter__())

    @property
    def url(self) -> str:
        return self.served.url

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return self.thread.run(coro, timeout_s)

    def close(self) -> None:
        try:
            self.thread.run(self._context.__aexit__(None, None, None))
        finally:
            self.thread.close()
