"""Input modules on the head: each runs ``start(handler, args, stop_event)`` in a thread.

``handler.onAdd(item)`` blocks the input's thread until the pebble is committed to the
store and returns its id, so an input acknowledges an item (marks a file seen, replies
202) only once nothing can lose it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryoflow.compat.inputs import adapt as adapt_for_cryocloud
from cryoflow.engine.args import Scope, resolve_arg
from cryoflow.errors import ArgumentError, CryoflowError, InputError
from cryoflow.graph.model import Graph, Node
from cryoflow.graph.modules import builtin_modules_dir, load_module
from cryoflow.head import Head
from cryoflow.store import Store, codec
from cryoflow.store.reader import StoreReader

log = logging.getLogger("cryoflow.daemon.inputs")


class HeadLink:
    """The :class:`~cryoflow.watch.HeadPort` of a running head: what input threads may ask.

    Each thread that reads the store gets a reader of its own.
    """

    def __init__(self, head: Head) -> None:
        self._head = head
        self._local = threading.local()

    @property
    def accepting(self) -> bool:
        return self._head.accepting

    @property
    def unfinished(self) -> int:
        return self._head.engine.active

    @property
    def node_order(self) -> tuple[str, ...]:
        return tuple(self._head.graph.nodes)

    def status_value(self, channel: str, param: str) -> Any:
        return self._head.status.get((channel, param))

    def has_seen(self, key: str) -> bool:
        return bool(self._reader().has_seen(key))

    def pebble(self, pebble_id: int) -> Mapping[str, Any] | None:
        found: Mapping[str, Any] | None = self._reader().pebble(pebble_id)
        return found

    def failpoint(self, name: str) -> None:
        self._head.failpoints.hit(name)

    def release(self) -> None:
        reader: StoreReader | None = getattr(self._local, "reader", None)
        if reader is not None:
            self._local.reader = None
            reader.close()

    def _reader(self) -> StoreReader:
        reader: StoreReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._head.store.reader()
        return reader


class InputHandler:
    """What an input module calls; one per input node. ``head`` is a :class:`HeadLink`."""

    def __init__(self, head: Head, node: Node, loop: asyncio.AbstractEventLoop) -> None:
        self.head = HeadLink(head)
        self.node = node
        self._head = head
        self._offer = head.offer
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The head's event loop: a watcher that serves on it offers with :meth:`offer_here`."""
        return self._loop

    def offer_here(self, item: Mapping[str, Any], *, idem_key: str | None = None
                   ) -> asyncio.Future[int]:
        """Offer ``item`` from a task on the head's loop (no hand-over between threads).

        The future gives the pebble id once committed. Raises the store's error once the
        head has stopped for good, RuntimeError while it is stopping.
        """
        if self._head.fatal is not None:
            raise self._head.fatal
        if not self._head.accepting:
            raise RuntimeError("the head is stopping")
        return self._offer(self.node.name, item, idem_key=idem_key)

    def onAdd(  # noqa: N802 - the module API's name
        self,
        item: Mapping[str, Any],
        *,
        idem_key: str | None = None,
        seen_key: str | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """Commit ``item`` as a pebble and return its id (blocks until committed)."""
        if not isinstance(item, Mapping):
            raise InputError(
                f"input node '{self.node.name}' offered {type(item).__name__}; "
                "an item must be a dict")
        return self.submit(item, idem_key=idem_key, seen_key=seen_key).result(timeout_s)

    def submit(
        self, item: Mapping[str, Any], *, idem_key: str | None = None,
        seen_key: str | None = None,
    ) -> Future[int]:
        """Offer ``item`` without waiting; the future resolves once committed."""

        async def offer() -> int:
            return await self._offer(self.node.name, dict(item), idem_key=idem_key,
                                     seen_key=seen_key)

        return asyncio.run_coroutine_threadsafe(offer(), self._loop)

    def has_seen(self, key: str) -> bool:
        """Was an item with this seen key committed before (files across restarts)?"""
        return self.head.has_seen(key)

    def resume_or_add(self, item: Mapping[str, Any], *, timeout_s: float | None = None) -> int:
        """The unfinished pebble of this input node with an equal item, else a new one.

        What ``cmdline`` offers: a run killed before its pebble finished is resumed by
        the next run with the same options instead of getting a second pebble.
        """
        async def offer() -> int:
            return await offer_unless_unfinished(self._head, self.node.name, dict(item))

        return asyncio.run_coroutine_threadsafe(offer(), self._loop).result(timeout_s)


async def offer_unless_unfinished(head: Head, input_node: str, item: dict[str, Any]) -> int:
    """Offer ``item`` from ``input_node`` unless an unfinished pebble of that input holds an
    equal item: then that pebble's id (it is resumed). Runs on the head's loop."""
    same = unfinished_with(head.store, input_node, item)
    if same is not None:
        log.info("resuming pebble %d, unfinished with the same input from '%s'", same,
                 input_node)
        return same
    return await head.offer(input_node, item)


def unfinished_with(store: Store, input_node: str, item: Mapping[str, Any]) -> int | None:
    """The first unfinished pebble of ``input_node`` whose item equals ``item`` (as
    stored, so JSON-equal), or None."""
    wanted = codec.loads(codec.dumps(dict(item)))
    after = 0
    while page := store.pebbles(state="active", after_id=after, limit=500):
        for pebble in page:
            if pebble["input_node"] == input_node and pebble["item"] == wanted:
                return int(pebble["id"])
        after = page[-1]["id"]
    return None


@dataclass
class _Running:
    node: Node
    thread: threading.Thread
    singlerun: bool
    error: BaseException | None = None


class InputRunner:
    """Starts every input node's module in its own thread and stops them together."""

    def __init__(self, head: Head, graph: Graph, options: Mapping[str, Any],
                 config: Mapping[str, Any]) -> None:
        self.head = head
        self.graph = graph
        self.options = dict(options)
        self.config = dict(config)
        self.stop_event = threading.Event()
        self._running: list[_Running] = []

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        for node in self.graph.input_nodes:
            module = load_module(node.module_ref or node.module)
            args = self.args_for(node)
            handler = InputHandler(self.head, node, loop)
            if not _is_builtin(module):
                adapt_for_cryocloud(handler, self.stop_event)
            singlerun = getattr(module, "ccmodule", {}).get("input_type") == "singlerun"
            running = _Running(node, threading.Thread(), singlerun)
            running.thread = threading.Thread(
                target=self._run, args=(running, module, handler, args),
                name=f"input-{node.name}", daemon=True)
            self._running.append(running)
            running.thread.start()

    def args_for(self, node: Node) -> dict[str, Any]:
        """An input node's args: the workflow options, then its own resolved args."""
        scope = Scope(node, (), lambda name: None, self.head.engine.options, self.config)
        args: dict[str, Any] = dict(self.head.engine.options)
        for name, spec in node.args.items():
            try:
                args[name] = resolve_arg(scope, name, spec)
            except ArgumentError as exc:
                raise InputError(str(exc)) from exc
        args["__name__"] = node.name  # CryoCloud input modules name their items with it
        return args

    def _run(self, running: _Running, module: Any, handler: InputHandler,
             args: dict[str, Any]) -> None:
        try:
            module.start(handler, args, self.stop_event)
        except CryoflowError as exc:  # said once, by the run that ends on it
            running.error = exc
        except Exception as exc:  # an input module's own bug: ends the run, with its traceback
            running.error = exc
            log.exception("input node '%s' failed", running.node.name)

    @property
    def all_singlerun(self) -> bool:
        return all(r.singlerun for r in self._running)

    @property
    def finished(self) -> bool:
        """Every input thread has returned."""
        return all(not r.thread.is_alive() for r in self._running)

    @property
    def errors(self) -> list[str]:
        """One sentence per input that ended with an error, naming the input node once."""
        return [_sentence(r.node.name, r.error) for r in self._running if r.error]

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stop_event.set()
        for running in self._running:
            running.thread.join(timeout_s)


def _sentence(node: str, error: BaseException) -> str:
    text = str(error) or type(error).__name__
    prefix = f"input node '{node}'"
    if not isinstance(error, CryoflowError):
        text = f"{type(error).__name__}: {text}"
    return text if text.startswith(prefix) else f"{prefix}: {text}"


def _is_builtin(module: Any) -> bool:
    where = getattr(module, "__file__", None)
    return where is not None and Path(where).resolve().parent == builtin_modules_dir()
