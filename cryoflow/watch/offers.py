"""Items waiting to be offered to the head, and offers waiting for their commit.

Contract of :class:`OfferQueue` (used from one thread, the watcher's):

- Items are offered in the order they were put, with their seen key.
- At most ``window`` offers are uncommitted at once, so a burst of ten thousand files
  reaches the head as a stream of group commits instead of one giant batch.
- While the intake is paused (head shutting down, a ``restrictions`` entry of the
  input node that does not hold) nothing is offered; items wait, none is dropped.
- An offer that fails (the store refused the batch) goes back to the front of the
  line and is offered again after ``retry_s``; an item is let go only once its pebble
  is committed, and then ``on_commit(key, pebble_id)`` is called.
- Each future's completion calls ``wake()`` (from the head's thread), so the watcher's
  loop can sleep until there is something to do.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from cryoflow.watch import Handler, intake_paused

log = logging.getLogger("cryoflow.watch")

PAUSE_RECHECK_S = 0.2
"""How often a paused intake looks at its restrictions again."""


@dataclass(frozen=True)
class _Offer:
    item: Mapping[str, Any]
    key: str


class OfferQueue:
    """See the module contract."""

    def __init__(
        self,
        handler: Handler,
        *,
        wake: Callable[[], None],
        on_commit: Callable[[str, int], None],
        window: int = 64,
        retry_s: float = 1.0,
    ) -> None:
        self.handler = handler
        self.window = max(1, window)
        self.retry_s = retry_s
        self._wake = wake
        self._on_commit = on_commit
        self._waiting: deque[_Offer] = deque()
        self._flight: deque[tuple[_Offer, Future[int]]] = deque()
        self._retry_at = 0.0
        self._paused: str | None = None
        self.committed = 0

    def __len__(self) -> int:
        """Items not yet committed (waiting or in flight)."""
        return len(self._waiting) + len(self._flight)

    def put(self, item: Mapping[str, Any], key: str) -> None:
        self._waiting.append(_Offer(item, key))

    def pump(self, now: float) -> None:
        """Collect finished offers, then offer waiting items while there is room."""
        self._reap(now)
        if not self._waiting or now < self._retry_at or not self._may_offer():
            return
        while self._waiting and len(self._flight) < self.window:
            offer = self._waiting.popleft()
            future = self.handler.submit(offer.item, seen_key=offer.key)
            future.add_done_callback(lambda _: self._wake())
            self._flight.append((offer, future))
        self._reap(now)

    def next_wake(self, now: float) -> float | None:
        """When :meth:`pump` has work again without a wake-up call, or None."""
        if not self._waiting or len(self._flight) >= self.window:
            return None
        if self._paused is not None:
            return now + PAUSE_RECHECK_S
        return max(now, self._retry_at)

    def _may_offer(self) -> bool:
        reason = intake_paused(self.handler)
        if reason != self._paused:
            if reason is not None:
                log.info("input node '%s' waits: %s", self.handler.node.name, reason)
            elif self._paused is not None:
                log.info("input node '%s' continues", self.handler.node.name)
            self._paused = reason
        return reason is None

    def _reap(self, now: float) -> None:
        failed: list[_Offer] = []
        while self._flight and self._flight[0][1].done():
            offer, future = self._flight.popleft()
            error = _error_of(future)
            if error is None:
                self.committed += 1
                self._on_commit(offer.key, future.result())
            else:
                failed.append(offer)
                log.warning("input node '%s': offer of %s failed, will retry: %s",
                            self.handler.node.name, offer.key, error)
        if failed:
            self._waiting.extendleft(reversed(failed))
            self._retry_at = now + self.retry_s


def _error_of(future: Future[int]) -> BaseException | None:
    if future.cancelled():
        return RuntimeError("the offer was cancelled (the head stopped)")
    return future.exception()
