"""The live feed behind the WebSocket and the metrics: store events, log lines, status.

Contract: :class:`EventFeed` runs on the head's loop. It is woken by the head's
listeners after each commit (and at least every ``poll_s``), reads the ``events`` and
``logs`` rows committed since its cursors, diffs the head's status values and job
progress, and hands each batch of messages to every subscriber, in order. The store is
the source of truth, so a subscriber that starts from a cursor and then subscribes
sees every row exactly once.

Messages are dicts with a ``type``:

- ``event``: ``{seq, ts, kind, pebble_id, job_id, data}`` (one ``events`` row)
- ``log``: ``{id, ts, level, pebble_id, job_id, node, message}`` (one ``logs`` row)
- ``status``: ``{channel, key, value}``; ``progress``: ``{job_id, value}`` (None: gone)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cryoflow.engine.records import Action, NodeChanged
from cryoflow.graph.instances import base_name
from cryoflow.store.reader import Queries

log = logging.getLogger("cryoflow.api")

Message = dict[str, Any]
Subscriber = Callable[[list[Message]], None]
StatusSource = Callable[[], Mapping[tuple[str, str], Any]]
ProgressSource = Callable[[], Mapping[str, Any]]

PAGE = 1000


def last_event_seq(store: Queries) -> int:
    """The highest ``events.seq`` (0 when empty), by a doubling then bisecting search."""
    return _last_key(lambda k: bool(store.events(after_seq=k, limit=1)))


def last_log_id(store: Queries) -> int:
    """The highest ``logs.id`` (0 when empty)."""
    return _last_key(lambda k: bool(store.logs(after_id=k, limit=1)))


def _last_key(exists_after: Callable[[int], bool]) -> int:
    """The smallest ``k >= 0`` with nothing after it, for keys that only grow."""
    if not exists_after(0):
        return 0
    low, high = 0, 1
    while exists_after(high):
        low, high = high, high * 2
    while high - low > 1:  # exists_after(low) and not exists_after(high)
        middle = (low + high) // 2
        if exists_after(middle):
            low = middle
        else:
            high = middle
    return high


class EventFeed:
    """Reads what each commit added and fans it out (see the module contract)."""

    def __init__(self, store: Queries, *, status: StatusSource, progress: ProgressSource,
                 poll_s: float = 0.2) -> None:
        self.store = store
        self.poll_s = poll_s
        self.seq = 0
        self.log_id = 0
        self._status_source = status
        self._progress_source = progress
        self._status: dict[tuple[str, str], Any] = {}
        self._progress: dict[str, Any] = {}
        self._subscribers: list[Subscriber] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Set the cursors to the store's end and start polling."""
        self.seq = last_event_seq(self.store)
        self.log_id = last_log_id(self.store)
        self._status = dict(self._status_source())
        self._progress = dict(self._progress_source())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Read now (called after a commit)."""
        self._wake.set()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def snapshot(self) -> Message:
        """The status values and job progress as of the last read, plus the cursors."""
        return {"type": "snapshot", "seq": self.seq, "log_id": self.log_id,
                "status": [{"channel": c, "key": k, "value": v}
                           for (c, k), v in self._status.items()],
                "progress": dict(self._progress)}

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):  # unlike wait_for, never eats a cancel
                    await self._wake.wait()
            self._wake.clear()
            try:
                self.poll()
            except Exception:  # a failed read is retried at the next wake
                log.exception("the API's event feed could not read the store")

    def poll(self) -> None:
        """Read and publish everything new since the cursors."""
        events = self.store.events(after_seq=self.seq, limit=PAGE)
        logs = self.store.logs(after_id=self.log_id, limit=PAGE)
        messages = [{"type": "event", **row} for row in events]
        messages += [{"type": "log", **row} for row in logs]
        messages += self._status_changes() + self._progress_changes()
        if events:
            self.seq = events[-1]["seq"]
        if logs:
            self.log_id = logs[-1]["id"]
        if len(events) == PAGE or len(logs) == PAGE:
            self._wake.set()
        if messages:
            self._publish(messages)

    def _publish(self, messages: list[Message]) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(messages)
            except Exception:
                log.exception("an event feed subscriber failed; it was removed")
                self.unsubscribe(subscriber)

    def _status_changes(self) -> list[Message]:
        current = self._status_source()
        changed = [{"type": "status", "channel": c, "key": k, "value": v}
                   for (c, k), v in current.items() if self._status.get((c, k), _GONE) != v]
        if changed:
            self._status = dict(current)
        return changed

    def _progress_changes(self) -> list[Message]:
        current = self._progress_source()
        changed = [{"type": "progress", "job_id": j, "value": v}
                   for j, v in current.items() if self._progress.get(j, _GONE) != v]
        changed += [{"type": "progress", "job_id": j, "value": None}
                    for j in self._progress if j not in current]
        if changed:
            self._progress = dict(current)
        return changed


_GONE = object()


class LastOutputs:
    """The latest successful output of each node, from the head's ``NodeChanged`` actions.

    The web view applies an output's ``color``, ``shape``, ``label`` and ``value``.
    """

    def __init__(self) -> None:
        self.outputs: dict[str, Any] = {}

    def seed(self, store: Queries, last_pebble_id: int, count: int = 20) -> None:
        """Start from the outputs of the last ``count`` pebbles in the store."""
        for row in store.pebbles(after_id=max(0, last_pebble_id - count), limit=count):
            pebble = store.pebble(row["id"])
            for name, branches in (pebble or {}).get("nodes", {}).items():
                for state in branches.values():
                    if state["outcome"] == "success" and state["output"] is not None:
                        self.outputs[base_name(name)] = state["output"]

    def __call__(self, action: Action) -> None:
        if isinstance(action, NodeChanged) and action.state.outcome == "success":
            if action.state.output is not None:
                self.outputs[base_name(action.node)] = action.state.output
