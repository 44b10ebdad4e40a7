"""A head with a real store, the inline executor and its input modules, in a thread.

Tests of the input watchers drive real files and real HTTP from the test's own thread
and wait for conditions (never a fixed sleep) with :meth:`Rig.wait_for`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from enginekit import graph, node

from cryoflow.daemon.inputs import InputHandler, InputRunner
from cryoflow.graph.model import Graph, Node, WorkerClass
from cryoflow.head import Head
from cryoflow.store import Store
from cryoflow.store.reader import StoreReader
from cryoflow.workers.inline import InlineExecutor

ROOT = Path(__file__).resolve().parents[1]
DIRWATCHER = str(ROOT / "cryoflow" / "builtin_modules" / "dirwatcher.py")
NETWATCHER = str(ROOT / "cryoflow" / "builtin_modules" / "netwatcher.py")
PROBE = str(ROOT / "tests" / "data" / "watch_modules" / "probe.py")

T = TypeVar("T")


def input_node(name: str, module: str, args: Mapping[str, Any], **keys: Any) -> Node:
    ref = DIRWATCHER if module == "dirwatcher" else NETWATCHER
    return node(name, module=module, module_ref=ref, args=dict(args), **keys)


def probe_node(name: str, parent: str, args: Mapping[str, Any]) -> Node:
    return node(name, (parent,), module="probe", module_ref=PROBE, args=dict(args))


def watch_graph(*inputs: Node, **probe_args: Any) -> Graph:
    """Input nodes, each followed by a probe node ``P<input>`` hashing ``fullpath``."""
    args = probe_args or {"path": {"output": "parent.fullpath", "default": None},
                          "value": {"output": "parent.value", "default": None}}
    return graph(*inputs, *(probe_node(f"P{n.name}", n.name, args) for n in inputs))


class Rig:
    """Runs a head and its inputs on an event loop in a background thread."""

    def __init__(self, g: Graph, state: Path, *, workers: int = 2,
                 options: Mapping[str, Any] | None = None, run_inputs: bool = True,
                 max_pages: int | None = None) -> None:
        self.graph = g
        self.state = state
        self.run_inputs = run_inputs
        self.max_pages = max_pages
        # no workers: a class with 0 slots (an empty mapping means the default slots)
        self.slots = ({WorkerClass.NORMAL: workers, WorkerClass.ADMIN: 1} if workers
                      else {WorkerClass.NORMAL: 0})
        self.options = dict(options or {})
        self.loop: asyncio.AbstractEventLoop | None = None
        self.head: Head | None = None
        self.store: Store | None = None
        self.inputs: InputRunner | None = None
        self.reader: StoreReader | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="rig-head", daemon=True)

    def __enter__(self) -> Rig:
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the head did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the head thread did not stop"

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the test by __enter__
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.store = Store.open(self.state, workflow=self.graph.name, max_pages=self.max_pages)
        try:
            self.head = Head(self.graph, store=self.store, options=self.options,
                             executor=InlineExecutor(slots=self.slots))
            await self.head.start()
            self.inputs = InputRunner(self.head, self.graph, self.options, {})
            if self.run_inputs:
                self.inputs.start(self.loop)
            self.reader = self.store.reader()
            self._ready.set()
            await self._stop.wait()
            await asyncio.to_thread(self.inputs.stop)
            await self.head.stop()
        finally:
            self.store.close()

    # ------------------------------------------------------------------ for tests

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the head's loop and return its result."""
        assert self.loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def handler(self, name: str) -> InputHandler:
        """The input handler of input node ``name``, for a watcher run by the test."""
        assert self.head is not None and self.loop is not None
        return InputHandler(self.head, self.graph.nodes[name], self.loop)

    def pebbles(self, input_node: str | None = None) -> list[dict[str, Any]]:
        assert self.reader is not None
        found = self.reader.pebbles(limit=1_000_000)
        return [p for p in found if input_node is None or p["input_node"] == input_node]

    def pebble(self, pebble_id: int) -> dict[str, Any] | None:
        assert self.reader is not None
        return self.reader.pebble(pebble_id)

    def set_status(self, channel: str, key: str, value: Any) -> None:
        """Publish a status value as a job would (for ``restrictions``)."""
        assert self.head is not None
        head = self.head
        self.call(lambda: head.status.__setitem__((channel, key), value))

    def input_errors(self) -> list[str]:
        return self.inputs.errors if self.inputs is not None else []


def wait_for(condition: Callable[[], T], *, timeout: float = 15.0, what: str = "",
             every: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(every)


def still(condition: Callable[[], bool], *, for_s: float, every: float = 0.02) -> bool:
    """True when ``condition`` holds at every poll for ``for_s`` seconds."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(every)
    return True
