"""The folder watcher behind the ``dirwatcher`` module.

Contract of :class:`DirWatcher`:

- Every item of the folder (see :class:`~cryoflow.watch.files.Layout`) becomes a pebble
  once it has **settled**: its size, mtime_ns and inode unchanged for ``stabilize_s``
  after the last event that touched it (a write, a close after writing, a rename into
  place). A folder item settles when nothing below it changed for ``stabilize_s``.
  A path deleted or renamed away before it settled never becomes a pebble.
- Each version of an item is offered with its seen key
  (:func:`~cryoflow.watch.files.seen_key`), which the head commits in the same
  transaction as the pebble: a version becomes a pebble exactly once, across restarts.
  A later version (a rewritten file) is a new item.
- The folder is scanned when the watcher starts (so items that arrived while the head
  was down are found), again when the kernel's event queue overflowed, and every
  ``sweep_s`` as a reconciliation sweep. Events come from watchdog's inotify observer,
  or its polling observer with ``poll`` (for NFS and SMB, where inotify sees nothing).
- The watcher only offers items; ``restrictions`` and a stopping head pause the offers
  (items wait, none is dropped). :meth:`DirWatcher.run` returns soon after
  ``stop_event`` is set, with the observer stopped and joined.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from cryoflow.errors import InputError
from cryoflow.watch import Args, Handler, failpoint
from cryoflow.watch.files import DEFAULT_IGNORE, Layout, ScanDir, Stat, item_for, seen_key
from cryoflow.watch.offers import OfferQueue
from cryoflow.watch.settle import Settled, SettleTracker

log = logging.getLogger("cryoflow.watch")

MAX_WAIT_S = 0.2
"""The longest the loop sleeps, so a stop request is seen quickly."""
EVENT_BATCH = 5000
"""Events handled per loop turn before due probes and offers get their turn."""
EMITTED_MEMORY = 100_000
"""Seen keys remembered in memory, to skip versions already committed."""
_EVENT_TYPES = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent,
                FileDeletedEvent, FileAttribEvent, DirCreatedEvent, DirMovedEvent,
                DirDeletedEvent]
"""What the observer reports. A folder's own "modified" is left out: every change it
stands for also comes as an event for the entry that changed."""
_OVERFLOW_LOGGER = "watchdog.observers.inotify_c"


@dataclass(frozen=True)
class DirwatchConfig:
    """The ``dirwatcher`` module's args, checked."""

    src: str  #: absolute path of the watched folder
    stabilize_s: float = 5.0
    recursive: bool = False
    dirs: bool = False
    patterns: tuple[str, ...] = ("*",)
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    poll: bool = False
    poll_s: float = 1.0
    sweep_s: float = 300.0
    window: int = 256

    @classmethod
    def from_args(cls, node: str, args: Mapping[str, Any]) -> DirwatchConfig:
        """Read the module args; raise :class:`InputError` naming what to change."""
        a = Args(node, args)
        src = os.path.abspath(os.path.expanduser(a.required_text("src")))
        if not os.path.isdir(src):
            raise a.problem("src", f"must be an existing folder; {src} is not one")
        stabilize_s = a.number("stabilize", 5.0)
        return cls(
            src=src, stabilize_s=stabilize_s, recursive=a.flag("recursive"),
            dirs=a.flag("dirs"), patterns=a.strings("patterns", ("*",)),
            ignore=a.strings("ignore", DEFAULT_IGNORE), poll=a.flag("poll"),
            poll_s=a.number("poll_interval", min(1.0, max(0.1, stabilize_s / 4)), minimum=0.01),
            sweep_s=a.number("sweep", 300.0), window=a.integer("window", 256, minimum=1),
        )

    def layout(self) -> Layout:
        return Layout(self.src, recursive=self.recursive, dirs=self.dirs,
                      patterns=self.patterns, ignore=self.ignore)


@dataclass(frozen=True)
class Event:
    """What the observer's thread tells the watcher's loop."""

    kind: str  #: change | newdir | dirchange | gone | overflow | wake
    path: str = ""


class _Relay(FileSystemEventHandler):
    """Runs in watchdog's thread: turns its events into :class:`Event` on a queue."""

    def __init__(self, put: Callable[[Event], None]) -> None:
        self._put = put

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind, path = event.event_type, os.fsdecode(event.src_path)
        if kind in ("moved", "deleted"):
            self._put(Event("gone", path))
        if kind == "moved":
            path = os.fsdecode(event.dest_path)
        if kind == "deleted":
            return
        if not event.is_directory:
            self._put(Event("change", path))
        elif kind in ("created", "moved"):
            self._put(Event("newdir", path))
        else:
            self._put(Event("dirchange", path))


class _OverflowAlarm(logging.Handler):
    """Turns watchdog's "inotify queue overflowed" warning into a rescan request."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in str(record.msg).lower():
            self._on_overflow()


class DirWatcher:
    """Watches one folder for one input node (see the module contract)."""

    def __init__(
        self,
        config: DirwatchConfig,
        handler: Handler,
        *,
        clock: Callable[[], float] = time.monotonic,
        observer_factory: Callable[[], BaseObserver] | None = None,
        stat: Stat = os.stat,
        scandir: ScanDir = os.scandir,
    ) -> None:
        self.config = config
        self.handler = handler
        self.layout = config.layout()
        self.tracker = SettleTracker(config.stabilize_s)
        self.offers = OfferQueue(handler, wake=self.wake, on_commit=self._committed,
                                 window=config.window)
        self._clock = clock
        self._observer_factory = observer_factory
        self._stat = stat
        self._scandir = scandir
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._emitted: OrderedDict[str, None] = OrderedDict()
        self._touched: set[str] = set()
        self._rescan_wanted = True
        self._next_sweep = 0.0

    # ------------------------------------------------------------------ life cycle

    def run(self, stop_event: threading.Event) -> None:
        """Watch until ``stop_event`` is set (blocks the calling thread)."""
        alarm = _OverflowAlarm(self.request_rescan)
        logging.getLogger(_OVERFLOW_LOGGER).addHandler(alarm)
        observer = self._start_observer()
        try:
            while not stop_event.is_set():
                self.step(self._sleep_s())
        finally:
            logging.getLogger(_OVERFLOW_LOGGER).removeHandler(alarm)
            observer.stop()
            observer.join(5.0)

    def wake(self) -> None:
        """Make the loop look at its offers now (any thread)."""
        self._events.put(Event("wake"))

    def request_rescan(self) -> None:
        """Scan the whole folder again soon (any thread), e.g. after lost events."""
        self._events.put(Event("overflow"))

    def step(self, wait_s: float = 0.0) -> None:
        """One turn of the loop: wait up to ``wait_s`` for events, then do what is due."""
        events = self._drain(wait_s)
        now = self._clock()
        for event in events:
            self._on_event(event, now)
        if self._rescan_wanted or now >= self._next_sweep:
            self._rescan(now)
        for path in self._touched:  # each path once, however many events it had
            self._observe(path, now, touched=True)
        self._touched.clear()
        for path in self.tracker.due(now):
            self._observe(path, now, touched=False)
        for settled in self.tracker.settled():
            self._emit(settled)
        self.offers.pump(now)

    # ------------------------------------------------------------------ observer

    def _start_observer(self) -> BaseObserver:
        relay = _Relay(self._events.put)
        try:
            return self._schedule(self._make_observer(), relay)
        except OSError as exc:
            if self.config.poll or self._observer_factory is not None:
                raise InputError(f"input node '{self.handler.node.name}': cannot watch "
                                 f"{self.config.src}: {exc}") from exc
            log.warning("input node '%s': inotify cannot watch %s (%s); polling every %ss "
                        "instead", self.handler.node.name, self.config.src, exc,
                        self.config.poll_s)
            return self._schedule(PollingObserver(timeout=self.config.poll_s), relay)

    def _make_observer(self) -> BaseObserver:
        if self._observer_factory is not None:
            return self._observer_factory()
        if self.config.poll:
            return PollingObserver(timeout=self.config.poll_s)
        return Observer()

    def _schedule(self, observer: BaseObserver, relay: _Relay) -> BaseObserver:
        recursive = self.config.recursive or self.config.dirs
        observer.schedule(relay, self.config.src, recursive=recursive,
                          event_filter=list(_EVENT_TYPES))
        observer.start()
        return observer

    # ------------------------------------------------------------------ the loop

    def _sleep_s(self) -> float:
        now = self._clock()
        wakes: Iterable[float | None] = (self.tracker.next_due(),
                                         self.offers.next_wake(now), self._next_sweep)
        soonest = min((w for w in wakes if w is not None), default=now + MAX_WAIT_S)
        return max(0.0, min(MAX_WAIT_S, soonest - now))

    def _drain(self, wait_s: float) -> list[Event]:
        events: list[Event] = []
        try:
            events.append(self._events.get(timeout=wait_s) if wait_s > 0
                          else self._events.get_nowait())
            while len(events) < EVENT_BATCH:
                events.append(self._events.get_nowait())
        except queue.Empty:
            pass
        return events

    def _on_event(self, event: Event, now: float) -> None:
        if event.kind == "overflow":
            self._rescan_wanted = True
            return
        if event.kind == "wake":
            return
        if event.kind == "newdir" and not self.layout.dirs:
            if self.layout.recursive and self.layout.target(event.path) is not None:
                self._touched.update(self.layout.scan(event.path, scandir=self._scandir))
            return
        target = self.layout.target(event.path)
        if target is None:
            return
        if event.kind == "gone" and target == event.path:
            self.tracker.forget(target)
            self._touched.discard(target)
        elif event.kind == "change" or self.layout.dirs:
            self._touched.add(target)  # with dirs: anything at or below a top folder

    def _observe(self, path: str, now: float, *, touched: bool) -> None:
        probed = self.layout.probe(path, stat=self._stat, scandir=self._scandir)
        if probed is None:
            self.tracker.forget(path)
            return
        version, isdir = probed
        if path not in self.tracker:
            if seen_key(self.handler.node.name, path, version) in self._emitted:
                return
        self.tracker.observe(path, version.size, version.mtime_ns, version.inode, now,
                             isdir=isdir, touched=touched)

    def _rescan(self, now: float) -> None:
        self._rescan_wanted = False
        self._next_sweep = now + self.config.sweep_s if self.config.sweep_s > 0 else float("inf")
        for path in self.layout.scan(scandir=self._scandir):
            if path not in self.tracker:
                self._observe(path, now, touched=False)

    def _emit(self, settled: Settled) -> None:
        key = seen_key(self.handler.node.name, settled.path, settled.version)
        if key not in self._emitted:
            failpoint(self.handler, "watcher_seen_before_commit")
            self.offers.put(item_for(self.config.src, settled), key)

    def _committed(self, key: str, pebble_id: int) -> None:
        self._emitted[key] = None
        if len(self._emitted) > EMITTED_MEMORY:
            self._emitted.popitem(last=False)


def watch(handler: Handler, args: Mapping[str, Any], stop_event: threading.Event) -> None:
    """The ``dirwatcher`` module's ``start``: check the args, then watch until stopped."""
    config = DirwatchConfig.from_args(handler.node.name, args)
    log.info("input node '%s' watches %s (stabilize %ss%s)", handler.node.name, config.src,
             config.stabilize_s, ", polling" if config.poll else "")
    DirWatcher(config, handler).run(stop_event)
