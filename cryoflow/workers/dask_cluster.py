"""The head's connection to a Dask cluster, for the Dask executor (:mod:`.dask`).

:class:`DaskConnection` holds an asynchronous ``distributed.Client`` on the head's
loop, to a scheduler or to a ``LocalCluster`` it starts; subscribes to the executor's
event topic; registers the :class:`~.dask_worker.JobRegistry` plugin; asks the
scheduler for ``allowed_failures = 0``; and looks up the workers every ``refresh_s``:
their Dask resources are the executor's slots, their host (``CRYOFLOW_NODE_NAME`` or
hostname, asked once per worker) is what ``ccnode`` pins to. After the scheduler was
lost, :meth:`DaskConnection.connected` waits for the client to reconnect (or makes a
new one) and prepares the cluster again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, LocalCluster

from cryoflow.graph.model import WorkerClass
from cryoflow.workers.dask_worker import PLUGIN_NAME, JobRegistry, no_dask_retries, node_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DaskOptions:
    """How the Dask executor connects and runs jobs. Units are in the names."""

    scheduler: str | None = None
    """``tcp://HOST:8786``; None starts a LocalCluster."""
    local_workers: int = 2
    local_resources: Mapping[str, int] = field(default_factory=lambda: {"normal": 1, "admin": 1})
    prefetch: int = 2
    """Jobs per slot that may wait at Dask, so a worker never waits for the head between
    short jobs (one sent ahead may start after a higher-priority job queued later)."""
    kill_grace_s: float = 2.0
    refresh_s: float = 1.0
    """How often the workers (and so the slots) are looked up."""
    connect_timeout_s: float = 30.0
    no_dask_retries: bool = True
    """Ask the scheduler for ``allowed_failures = 0`` (cryoflow retries lost jobs)."""


@dataclass(frozen=True)
class WorkerInfo:
    """One Dask worker as the executor sees it."""

    address: str
    name: str
    host: str
    resources: Mapping[str, float]


class DaskConnection:
    """A client of one Dask cluster that survives the scheduler's restarts."""

    def __init__(self, options: DaskOptions, topic: str, on_event: Callable[[Any], None]) -> None:
        self._options = options
        self._topic, self._on_event = topic, on_event
        self.client: Any = None
        self.workers: dict[str, WorkerInfo] = {}
        self.capacity: dict[WorkerClass, int] = {c: 0 for c in WorkerClass}
        self._cluster: Any = None
        self._refresher: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def address(self) -> str:
        return str(self._options.scheduler or self._cluster.scheduler_address)

    async def open(self) -> None:
        """Connect (starting a LocalCluster first without a scheduler) and prepare."""
        try:
            if self._options.scheduler is None:
                self._cluster = await _local_cluster(self._options)
            self.client = await self._new_client()
            await self._prepare()
        except BaseException:
            await self.close(5.0)
            raise
        self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def close(self, timeout_s: float) -> None:
        self._closing = True
        for task in (self._refresher, self._reconnecting):
            if task is not None:
                task.cancel()
        for closable in (self.client, self._cluster):
            if closable is not None:
                await asyncio.wait_for(closable.close(), timeout_s)

    async def connected(self) -> None:
        """Return once the client talks to a scheduler (reconnecting if needed)."""
        if self.client is not None and self.client.status == "running":
            return
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.ensure_future(self._reconnect())
        await asyncio.shield(self._reconnecting)

    async def _new_client(self) -> Any:
        return await Client(
            self.address, asynchronous=True, timeout=self._options.connect_timeout_s
        )

    async def _prepare(self) -> None:
        """What a scheduler must know of us; done again after every reconnection."""
        self.client.subscribe_topic(self._topic, self._on_event)
        await self.client.register_plugin(JobRegistry(), name=PLUGIN_NAME)
        if self._options.no_dask_retries:
            try:
                await self.client.run_on_scheduler(no_dask_retries)
            except Exception as exc:  # the scheduler may lack cryoflow; Dask then retries
                log.warning(
                    "the Dask scheduler kept its own retries of lost workers' tasks "
                    "(%s); set distributed.scheduler.allowed-failures to 0 there",
                    exc,
                )
        await self.refresh()

    async def _reconnect(self) -> None:
        while not self._closing:
            status = self.client.status if self.client is not None else "closed"
            if status == "running":
                break
            if status in ("closed", "closing", "failed"):
                await self._replace_client()
                continue
            await asyncio.sleep(0.1)
        await self._prepare()

    async def _replace_client(self) -> None:
        old, self.client = self.client, None
        if old is not None:
            await old.close()
        try:
            self.client = await self._new_client()
        except (OSError, TimeoutError) as exc:
            log.warning("Dask scheduler %s not reachable yet (%s); trying again", self.address, exc)
            await asyncio.sleep(1.0)

    # Workers and slots

    async def _refresh_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._options.refresh_s)
            try:
                await self.refresh()
            except (OSError, TimeoutError, AttributeError) as exc:
                log.debug("Dask worker refresh failed: %s", exc)

    async def refresh(self) -> None:
        """Look the workers up; ask new ones for the host they stand for."""
        client = self.client
        if client is None or client.status != "running":
            return
        identity = await client.scheduler.identity(n_workers=-1)
        workers = identity.get("workers", {})
        new = [a for a in workers if a not in self.workers]
        hosts = await client.run(node_name, workers=new, on_error="ignore") if new else {}
        self.workers = {
            address: WorkerInfo(
                address,
                str(info.get("name", address)),
                str(hosts.get(address) or self._known_host(address, info)),
                info.get("resources") or {},
            )
            for address, info in workers.items()
        }
        self.capacity = _slots(self.workers.values())

    def _known_host(self, address: str, info: Mapping[str, Any]) -> str:
        known = self.workers.get(address)
        return known.host if known is not None else str(info.get("host", address))


async def _local_cluster(options: DaskOptions) -> Any:
    return await LocalCluster(
        n_workers=options.local_workers,
        threads_per_worker=max(1, int(sum(options.local_resources.values()))),
        processes=True,
        asynchronous=True,
        host="127.0.0.1",
        dashboard_address=":0",
        resources=dict(options.local_resources),
    )


def _slots(workers: Iterable[WorkerInfo]) -> dict[WorkerClass, int]:
    slots = {c: 0 for c in WorkerClass}
    for info in workers:
        for worker_class in WorkerClass:
            slots[worker_class] += int(info.resources.get(worker_class.value, 0))
    return slots
