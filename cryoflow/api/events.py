"""``GET /api/v1/events``: the live feed over a WebSocket, resumable by cursor.

Contract:

- ``?after=SEQ`` replays every ``events`` row with ``seq > SEQ`` from the store, and
  ``?after_log=ID`` every log line with ``id > ID``; left out, each starts at the
  present. Then the connection follows the live :class:`~cryoflow.api.feed.EventFeed`.
  The replay and the switch to live happen without a gap or a repeat.
- The first frame is ``[snapshot]`` (status values, job progress, and the cursors the
  live part starts from); every frame is a JSON array of feed messages, in order.
- Nothing is ever dropped: a client that falls more than ``max_queue`` messages behind
  is closed with code 4000 and a reason naming the cursor to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque

from aiohttp import WSCloseCode, web

from cryoflow.api.context import ctx
from cryoflow.api.feed import EventFeed, Message
from cryoflow.api.params import integer, json_error
from cryoflow.store.reader import Queries

CLOSE_TOO_SLOW = 4000
REPLAY_PAGE = 500
SEND_TIMEOUT_S = 10.0


class Client:
    """One connected WebSocket: a bounded queue of messages and the task sending them."""

    def __init__(self, ws: web.WebSocketResponse, *, max_queue: int) -> None:
        self.ws = ws
        self.max_queue = max_queue
        self.queue: deque[Message] = deque()
        self.ready = asyncio.Event()
        self.seq = 0
        self.log_id = 0
        self.too_slow = False

    def offer(self, messages: list[Message]) -> None:
        """Take a batch from the feed, or mark the client too slow (never drop silently)."""
        if self.too_slow:
            return
        if len(self.queue) + len(messages) > self.max_queue:
            self.too_slow = True
        else:
            self.queue.extend(messages)
        self.ready.set()

    async def send(self, messages: list[Message]) -> None:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await self.ws.send_str(json.dumps(messages, default=str))
        for message in messages:
            if message["type"] == "event":
                self.seq = message["seq"]
            elif message["type"] == "log":
                self.log_id = message["id"]

    async def pump(self) -> None:
        """Send queued batches until the client is closed or found too slow."""
        try:
            await self._pump()
        except (TimeoutError, ConnectionError):
            with contextlib.suppress(TimeoutError, ConnectionError):
                await _close(self.ws, WSCloseCode.GOING_AWAY, b"the connection stalled")

    async def _pump(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.too_slow:
                await self.close_too_slow()
                return
            batch = list(self.queue)
            self.queue.clear()
            if batch:
                await self.send(batch)

    async def close_too_slow(self) -> None:
        reason = f"too slow; reconnect with after={self.seq}&after_log={self.log_id}"
        with contextlib.suppress(TimeoutError, ConnectionError):
            await _close(self.ws, CLOSE_TOO_SLOW, reason.encode())


class EventHub:
    """The open WebSocket clients of one app; closes them all at shutdown."""

    def __init__(self, feed: EventFeed, store: Queries, *, max_queue: int = 10_000) -> None:
        self.feed = feed
        self.store = store
        self.max_queue = max_queue
        self.clients: set[Client] = set()

    async def serve(self, ws: web.WebSocketResponse, after: int | None,
                    after_log: int | None) -> None:
        """Replay from the cursors, then follow the feed until the socket closes."""
        client = Client(ws, max_queue=self.max_queue)
        self.clients.add(client)
        try:
            await self._replay(client, after, after_log)
            pump = asyncio.get_running_loop().create_task(client.pump())
            try:
                async for _ in ws:  # the client sends nothing we act on
                    pass
            finally:
                if not client.too_slow:  # else the pump is closing the socket: let it finish
                    pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError, ConnectionError):
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await pump
        finally:
            self.feed.unsubscribe(client.offer)
            self.clients.discard(client)

    async def _replay(self, client: Client, after: int | None, after_log: int | None) -> None:
        client.seq = self.feed.seq if after is None else min(after, self.feed.seq)
        client.log_id = self.feed.log_id if after_log is None else min(after_log, self.feed.log_id)
        await client.send([self.feed.snapshot()])
        while True:
            batch = self._replay_batch(client)
            if not batch:
                self.feed.subscribe(client.offer)  # no await since the check: no gap
                return
            await client.send(batch)

    def _replay_batch(self, client: Client) -> list[Message]:
        """Stored rows after the client's cursors, up to the feed's cursors."""
        batch: list[Message] = []
        if client.seq < self.feed.seq:
            rows = self.store.events(after_seq=client.seq, limit=REPLAY_PAGE)
            batch += [{"type": "event", **r} for r in rows if r["seq"] <= self.feed.seq]
        if client.log_id < self.feed.log_id:
            rows = self.store.logs(after_id=client.log_id, limit=REPLAY_PAGE)
            batch += [{"type": "log", **r} for r in rows if r["id"] <= self.feed.log_id]
        return batch

    async def close_all(self) -> None:
        """Close every client with 1001 (going away)."""
        for client in list(self.clients):
            with contextlib.suppress(TimeoutError, ConnectionError):
                await _close(client.ws, WSCloseCode.GOING_AWAY, b"the head is stopping")


async def _close(ws: web.WebSocketResponse, code: int, reason: bytes) -> None:
    """Close ``ws``, giving up after :data:`SEND_TIMEOUT_S`."""
    async with asyncio.timeout(SEND_TIMEOUT_S):
        await ws.close(code=code, message=reason)


async def events_handler(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket and stream the feed from the requested cursors."""
    after, after_log = integer(request, "after"), integer(request, "after_log")
    ws = web.WebSocketResponse(heartbeat=30.0, protocols=("cryoflow",))
    if not ws.can_prepare(request).ok:
        return json_error(426, "connect with a WebSocket client (Upgrade: websocket)")
    await ws.prepare(request)
    await ctx(request).hub.serve(ws, after, after_log)
    return ws
