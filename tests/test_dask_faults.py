"""Faults of a real Dask cluster under a running head: nothing is lost.

Each test starts its own ``dask scheduler`` with two workers on loopback (one a plain
``dask worker``, one started by ``ccnode``), runs a head with the Dask executor in
this process, breaks the cluster while jobs run, and ends with a ledger check: the
probe modules' ``exec``/``done`` markers (tests/harness) and the store must agree that
every pebble reached its end exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from enginekit import graph, node
from executorkit import DaskCluster
from harness.ledger import Ledger, StoreView

from cryoflow.graph.model import Graph
from cryoflow.head import Head
from cryoflow.store import Store
from cryoflow.workers.dask import DaskExecutor, DaskOptions

PROBES = Path(__file__).parent / "harness" / "probe_modules"
PEBBLES = 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler, ``w1`` (``dask worker``, host ``host-a``) and ``w2`` (``ccnode
    --name w2``, so host ``w2``), one normal slot each."""
    started = DaskCluster(tmp_path / "dask")
    started.folder.mkdir()
    started.start_scheduler()
    started.start_worker("w1", "host-a", resources="normal=1")
    started.start_ccnode("w2", "-n", "1", "-a", "0")
    try:
        started.wait_workers(2)
        yield started
    finally:
        started.stop()


def sleeper(ledger: Ledger, seconds: float) -> Graph:
    """``In → Sleep``: each pebble one ``probe_sleep`` job that leaves ledger markers."""
    sleep = node(
        "Sleep",
        ("In",),
        module="probe_sleep",
        module_ref=str(PROBES / "probe_sleep.py"),
        args={"ledger_dir": str(ledger.root), "seconds": seconds, "n": {"output": "In.n"}},
    )
    return graph(node("In", module="cmdline"), sleep)


async def run_head(g: Graph, state: Path, scheduler: str, fault: Any) -> None:
    """Offer the pebbles, call ``fault()`` (a coroutine) while they run, drain the head."""
    store = Store.open(state, workflow=g.name)
    head = Head(g, store=store, executor=DaskExecutor(DaskOptions(scheduler=scheduler)))
    await head.start()
    try:
        for n in range(PEBBLES):
            await head.offer("In", {"n": n})
        await fault()
        await asyncio.wait_for(head.wait_idle(), 90)
    finally:
        await head.stop()
        store.close()


async def until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s}s"
        await asyncio.sleep(0.05)


def assert_every_pebble_ended_once(
    ledger: Ledger, store: StoreView, *, exactly_once_work: bool
) -> dict[str, Any]:
    """The ledger check; returns the store's job rows by id."""
    pebbles = store.pebbles()
    assert [p["id"] for p in pebbles] == list(range(1, PEBBLES + 1))
    assert {p["outcome"] for p in pebbles} == {"completed"}, pebbles
    jobs = {job["id"]: job for job in store.jobs()}
    assert not [j for j in jobs.values() if j["state"] in ("queued", "running")]
    successes = Counter(
        j["id"].rpartition("#")[0] for j in jobs.values() if j["outcome"] == "success"
    )
    assert successes == {f"{p}/Sleep": 1 for p in range(1, PEBBLES + 1)}
    done = Counter(marker.job for marker in ledger.markers("done"))
    assert set(done) == set(successes), done
    if exactly_once_work:
        assert set(done.values()) == {1}, f"a job's work was done twice: {done}"
    return jobs


def test_a_worker_killed_mid_job_is_retried_on_the_other_worker(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger")

    async def kill_w1_while_both_run() -> None:
        await until(lambda: len(ledger.markers("exec")) >= 2, 30, "both workers busy")
        cluster.kill_worker("w1")

    asyncio.run(
        run_head(sleeper(ledger, 1.5), tmp_path / "state", cluster.address, kill_w1_while_both_run)
    )
    jobs = assert_every_pebble_ended_once(
        ledger, StoreView(tmp_path / "state"), exactly_once_work=True
    )
    lost = [j for j in jobs.values() if j["outcome"] == "lost"]
    assert len(lost) == 1, jobs
    assert lost[0]["host"] == "host-a"
    assert lost[0]["error"].startswith("the Dask worker running the job died")
    key = lost[0]["id"].rpartition("#")[0]
    retry = next(j for j in jobs.values() if j["id"].startswith(key) and j["outcome"] == "success")
    assert retry["host"] == "w2"
    assert {
        j["host"]
        for j in jobs.values()
        if j["started"] and j["started"] > lost[0]["started"] and j["outcome"] == "success"
    } == {"w2"}


def test_a_restarted_scheduler_gets_every_unfinished_job_again(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    cluster.kill_worker("w1")
    cluster.start_ccnode("w1", "-n", "1", "-a", "0")  # a ccnode rejoins on its own
    cluster.wait_workers(2)

    async def restart_the_scheduler() -> None:
        await until(lambda: len(ledger.markers("exec")) >= 2, 30, "both workers busy")
        cluster.kill_scheduler()
        await asyncio.sleep(1.0)
        cluster.start_scheduler()

    asyncio.run(
        run_head(sleeper(ledger, 1.5), tmp_path / "state", cluster.address, restart_the_scheduler)
    )
    assert_every_pebble_ended_once(ledger, StoreView(tmp_path / "state"), exactly_once_work=False)
    interrupted = Counter(m.job for m in ledger.markers("exec"))
    assert max(interrupted.values()) >= 2, "no job was cut short by the restart"
