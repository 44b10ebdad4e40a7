"""The head with a real store and the inline executor: group commit, dispatch, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from enginekit import graph, node

from cryoflow.errors import StoreError
from cryoflow.graph.model import Graph, Node, WorkerClass
from cryoflow.head import Head, missing_classes
from cryoflow.store import Retention, Store
from cryoflow.workers.inline import InlineExecutor
from cryoflow.workers.local import LocalExecutor

ECHO = str(Path(__file__).parent / "data" / "head_modules" / "echo.py")


def echo(name: str, parents: tuple[str, ...], **keys: Any) -> Node:
    return node(name, parents, module="echo", module_ref=ECHO, **keys)


def chain() -> Graph:
    return graph(node("In", module="cmdline"),
                 echo("A", ("In",), args={"x": {"output": "In.n"}}),
                 echo("B", ("A",), args={"x": {"output": "parent.x"}}))


async def _run(g: Graph, state: Path, items: list[dict[str, Any]]) -> tuple[Head, list[int]]:
    store = Store.open(state, workflow=g.name)
    head = Head(g, store=store, executor=InlineExecutor())
    await head.start()
    ids = [await head.offer("In", item) for item in items]
    await asyncio.wait_for(head.wait_idle(), 20)
    await head.stop()
    return head, ids


def test_pebbles_run_through_a_chain_and_are_stored(tmp_path: Path) -> None:
    head, ids = asyncio.run(_run(chain(), tmp_path, [{"n": 1}, {"n": 2}]))
    pebble = head.store.pebble(ids[1])
    assert pebble is not None and pebble["outcome"] == "completed"
    assert pebble["nodes"]["B"][""]["output"] == {"x": 2}
    assert head.counts.completed == 2
    head.store.close()


def test_a_module_error_is_kept_in_the_job_record(tmp_path: Path) -> None:
    g = graph(node("In", module="cmdline"), echo("A", ("In",), args={"fail": True, "x": 7}))
    head, ids = asyncio.run(_run(g, tmp_path, [{}]))
    pebble = head.store.pebble(ids[0])
    assert pebble is not None and pebble["outcome"] == "failed"
    assert "asked to fail on 7" in pebble["nodes"]["A"][""]["error"]
    job = head.store.jobs(pebble_id=ids[0])[0]
    assert "RuntimeError" in (job["error"] or "")
    head.store.close()


def test_status_values_and_log_lines_reach_the_store(tmp_path: Path) -> None:
    head, ids = asyncio.run(_run(chain(), tmp_path, [{"n": 5}]))
    assert head.store.status_values("A")["A"]["progress"] == 50
    assert any("echo 5" in line["message"] for line in head.store.logs(pebble_id=ids[0]))
    head.store.close()


def test_an_idempotency_key_returns_the_same_pebble(tmp_path: Path) -> None:
    async def go() -> tuple[int, int]:
        store = Store.open(tmp_path, workflow="t")
        head = Head(chain(), store=store, executor=InlineExecutor())
        await head.start()
        first = await head.offer("In", {"n": 1}, idem_key="k1")
        second = await head.offer("In", {"n": 1}, idem_key="k1")
        await head.wait_idle()
        await head.stop()
        store.close()
        return first, second

    first, second = asyncio.run(go())
    assert first == second


def test_a_restarted_head_continues_unfinished_pebbles(tmp_path: Path) -> None:
    async def accept_only() -> int:
        store = Store.open(tmp_path, workflow="t")
        head = Head(chain(), store=store, executor=InlineExecutor(slots={}))
        await head.start()
        pebble_id = await head.offer("In", {"n": 3})
        await head.stop()
        store.close()
        return pebble_id

    pebble_id = asyncio.run(accept_only())

    async def resume() -> dict[str, Any]:
        store = Store.open(tmp_path, workflow="t")
        head = Head(chain(), store=store, executor=InlineExecutor())
        await head.start()
        await asyncio.wait_for(head.wait_idle(), 20)
        await head.stop()
        result = store.pebble(pebble_id)
        store.close()
        assert result is not None
        return result

    assert resume_outcome(asyncio.run(resume())) == "completed"


def resume_outcome(pebble: dict[str, Any]) -> str:
    return str(pebble["outcome"])


def test_a_graph_needing_a_missing_worker_class_is_refused() -> None:
    g = graph(node("In", module="cmdline"), echo("A", ("In",), gpu=True))
    problems = missing_classes(g, InlineExecutor().capacity())
    assert problems == ["nodes A need gpu workers but none are configured; "
                        "start some with --gpus N"]


def test_a_failed_pebble_retried_from_its_failed_node_completes(tmp_path: Path) -> None:
    flaky = str(Path(ECHO).with_name("flaky.py"))
    g = graph(node("In", module="cmdline"),
              node("A", ("In",), module="flaky", module_ref=flaky,
                   args={"flag": str(tmp_path / "flag")}),
              echo("B", ("A",), run_on="success", args={"x": {"output": "A.tries"}}))

    async def go() -> dict[str, Any]:
        store = Store.open(tmp_path / "state", workflow="t")
        head = Head(g, store=store, executor=InlineExecutor())
        await head.start()
        pebble_id = await head.offer("In", {})
        await asyncio.wait_for(head.wait_idle(), 20)
        assert store.pebble(pebble_id)["outcome"] == "failed"  # type: ignore[index]
        assert head.retry_pebble(pebble_id)
        await asyncio.sleep(0)
        await asyncio.wait_for(head.wait_idle(), 20)
        await head.stop()
        result = store.pebble(pebble_id)
        store.close()
        assert result is not None
        return result

    pebble = asyncio.run(go())
    assert pebble["outcome"] == "completed"
    assert pebble["nodes"]["B"][""]["output"] == {"x": "again"}
    assert pebble["nodes"]["A"][""]["attempts"] == 2


def test_a_cached_node_reuses_an_earlier_success_for_the_same_inputs(tmp_path: Path) -> None:
    from cryoflow.graph.model import CacheSpec

    g = graph(node("In", module="cmdline"),
              echo("A", ("In",), cache=CacheSpec(("x",), 3600.0),
                   args={"x": {"output": "In.n"}}))

    async def go() -> tuple[Head, list[int]]:
        store = Store.open(tmp_path, workflow=g.name)
        head = Head(g, store=store, executor=InlineExecutor())
        await head.start()
        ids = []
        for n in (1, 1, 2):  # one after the other: a result is cached once it succeeded
            ids.append(await head.offer("In", {"n": n}))
            await asyncio.wait_for(head.wait_idle(), 20)
        await head.stop()
        return head, ids

    head, ids = asyncio.run(go())
    runs = [line for line in head.store.logs() if line["message"].startswith("echo")]
    assert [line["message"] for line in runs] == ["echo 1", "echo 2"]
    second = head.store.pebble(ids[1])
    assert second is not None and second["nodes"]["A"][""]["output"] == {"x": 1}
    head.store.close()


def test_without_the_cache_every_job_runs(tmp_path: Path) -> None:
    from cryoflow.graph.model import CacheSpec

    g = graph(node("In", module="cmdline"),
              echo("A", ("In",), cache=CacheSpec(("x",), None),
                   args={"x": {"output": "In.n"}}))

    async def go() -> Head:
        store = Store.open(tmp_path, workflow=g.name)
        head = Head(g, store=store, executor=InlineExecutor(), use_cache=False)
        await head.start()
        for _ in range(2):
            await head.offer("In", {"n": 1})
        await asyncio.wait_for(head.wait_idle(), 20)
        await head.stop()
        return head

    head = asyncio.run(go())
    assert len([line for line in head.store.logs() if line["message"] == "echo 1"]) == 2
    head.store.close()


def test_a_head_with_retention_keeps_only_the_newest_finished_pebbles(tmp_path: Path) -> None:
    async def go() -> tuple[list[int], dict[str, int], list[int]]:
        store = Store.open(tmp_path, workflow="t")
        head = Head(chain(), store=store, executor=InlineExecutor(),
                    retention=Retention(keep_pebbles=2, interval_s=0.0))
        await head.start()
        ids = [await head.offer("In", {"n": i}) for i in range(6)]
        await asyncio.wait_for(head.wait_idle(), 20)
        await head.stop()
        kept = [p["id"] for p in store.pebbles()]
        counts = store.pebble_counts()
        store.close()
        return ids, counts, kept

    ids, counts, kept = asyncio.run(go())
    assert kept == ids[-2:]
    assert counts == {"active": 0, "completed": 6, "failed": 0}


def test_retention_is_read_from_the_workflow_config(tmp_path: Path) -> None:
    with Store.open(tmp_path, workflow="t") as store:
        head = Head(chain(), store=store, executor=InlineExecutor(),
                    config={"retention": {"keep_pebbles": 1000, "max_age_days": 7}})
    assert head.retention.keep_pebbles == 1000
    assert head.retention.max_age_s == 7 * 86400


NAP = str(Path(__file__).parent / "data" / "head_modules" / "nap.py")


def levels(seconds: float) -> Graph:
    """One job per pebble: ``Low`` (priority 10) or ``High`` (priority 90) by its level."""
    def nap(name: str, priority: int, level: str) -> Node:
        return node(name, ("In",), module="nap", module_ref=NAP, priority=priority,
                    run_if=f"output:In.level == '{level}'", args={"seconds": seconds})

    return graph(node("In", module="cmdline"), nap("Low", 10, "lo"), nap("High", 90, "hi"))


async def _start_order(tmp_path: Path, seconds: float, low: int) -> list[str]:
    """Offer ``low`` low-priority pebbles, then an urgent one once the third has run; return
    the nodes in the order their jobs started on the one worker."""
    store = Store.open(tmp_path, workflow="t")
    executor = LocalExecutor(workers=1, admin_workers=0, prefetch=1)
    head = Head(levels(seconds), store=store, executor=executor)
    await head.start()
    try:
        for i in range(low):
            await head.offer("In", {"level": "lo", "i": i})
        await until_started(store, "Low", 3)
        await head.offer("In", {"level": "hi"})
        await asyncio.wait_for(head.wait_idle(), 60)
    finally:
        await head.stop()
    jobs = [j for j in store.jobs(limit=1000) if j["outcome"] == "success"]
    store.close()
    return [j["node"] for j in sorted(jobs, key=lambda j: j["retval"]["started"])]


async def until_started(store: Store, node: str, count: int) -> None:
    for _ in range(3000):
        if len([j for j in store.jobs(node=node, limit=1000) if j["state"] == "done"]) >= count - 1:
            if store.jobs(node=node, state="running"):
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} {node} jobs did not start")


def test_an_urgent_job_starts_before_long_jobs_already_queued_at_a_busy_worker(
        tmp_path: Path) -> None:
    order = asyncio.run(_start_order(tmp_path, 0.4, 5))
    assert order.index("High") == 3, order


def test_short_jobs_are_still_sent_ahead_to_busy_workers(tmp_path: Path) -> None:
    async def go() -> int:
        store = Store.open(tmp_path, workflow="t")
        executor = LocalExecutor(workers=1, admin_workers=0, prefetch=1)
        head = Head(levels(0.0), store=store, executor=executor)
        await head.start()
        sent_ahead = 0
        original = executor._place

        def place(task: Any) -> Any:
            nonlocal sent_ahead
            sent_ahead += not executor.slots()[WorkerClass.NORMAL][0]
            return original(task)

        executor._place = place  # type: ignore[method-assign]
        try:
            await asyncio.gather(*(head.offer("In", {"level": "lo"}) for _ in range(50)))
            await asyncio.wait_for(head.wait_idle(), 60)
        finally:
            await head.stop()
            store.close()
        return sent_ahead

    assert asyncio.run(go()) > 10


class FlakyStore:
    """Makes the first write batch that calls ``method`` fail at its commit (rolled back)."""

    def __init__(self, store: Store, method: str) -> None:
        self.store, self.method, self.failed = store, method, False
        self.real_batch = store.batch
        store.batch = self.batch  # type: ignore[method-assign]

    @contextmanager
    def batch(self) -> Iterator[Any]:
        with self.real_batch() as tx:
            called: list[bool] = []
            original = getattr(tx, self.method)

            def spy(*args: Any, **kwargs: Any) -> Any:
                called.append(True)
                return original(*args, **kwargs)

            setattr(tx, self.method, spy)
            yield tx
            if called and not self.failed:
                self.failed = True
                raise StoreError("the disk hiccuped")


def echoes(head: Head) -> list[str]:
    return [line["message"] for line in head.store.logs() if line["message"].startswith("echo")]


def test_after_a_refused_commit_no_job_runs_twice(tmp_path: Path) -> None:
    async def go() -> Head:
        store = Store.open(tmp_path, workflow="t")
        flaky = FlakyStore(store, "job_finished")  # the commit of A's result fails once
        head = Head(chain(), store=store, executor=InlineExecutor())
        await head.start()
        await head.offer("In", {"n": 1})
        await asyncio.wait_for(head.wait_idle(), 20)
        await head.stop()
        assert flaky.failed
        return head

    head = asyncio.run(go())
    assert echoes(head) == ["echo 1", "echo 1"]  # A once, B once
    assert [job["node"] for job in head.store.jobs()] == ["A", "B"]
    head.store.close()


def test_no_job_runs_for_an_item_whose_commit_was_refused(tmp_path: Path) -> None:
    async def go() -> Head:
        store = Store.open(tmp_path, workflow="t")
        FlakyStore(store, "add_pebble")
        head = Head(chain(), store=store, executor=InlineExecutor())
        await head.start()
        with pytest.raises(StoreError, match="hiccuped"):
            await head.offer("In", {"n": 1})
        await head.offer("In", {"n": 2})
        await asyncio.wait_for(head.wait_idle(), 20)
        await head.stop()
        return head

    head = asyncio.run(go())
    assert echoes(head) == ["echo 2", "echo 2"]
    assert head.counts.completed == 1
    head.store.close()
