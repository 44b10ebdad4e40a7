"""Ready-job selection: priority, oldest pebble, FIFO, max_parallel, restrictions, delays."""

from __future__ import annotations

from typing import Any

from enginekit import graph, node

from cryoflow.dispatch import Dispatcher
from cryoflow.engine.records import JobSpec, job_id
from cryoflow.graph.expr import parse_restriction
from cryoflow.graph.model import WorkerClass

NORMAL = WorkerClass.NORMAL


def job(name: str, pebble: int, priority: int = 50, args: dict[str, Any] | None = None,
        **keys: Any) -> JobSpec:
    return JobSpec(id=job_id(pebble, name, (), 1), pebble_id=pebble, node=name, branch=(),
                   attempt=1, args=args or {}, priority=priority, worker_class=NORMAL, **keys)


def drain(d: Dispatcher, now: float = 0.0) -> list[str]:
    order = []
    while (j := d.next_job(NORMAL, now)) is not None:
        order.append(j.id)
        d.finished(j.id)
    return order


def test_higher_priority_first_then_the_older_pebble_then_fifo() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",)), node("B", ("In",))))
    d.add(job("A", 3), 0)
    d.add(job("B", 2, priority=80), 0)
    d.add(job("A", 1), 0)
    d.add(job("B", 1), 0)
    assert drain(d) == ["2/B#1", "1/A#1", "1/B#1", "3/A#1"]


def test_max_parallel_holds_jobs_of_a_node_without_dropping_them() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",), max_parallel=1)))
    d.add(job("A", 1), 0)
    d.add(job("A", 2), 0)
    first = d.next_job(NORMAL, 0)
    assert first is not None and d.next_job(NORMAL, 0) is None
    assert list(d.waiting_reasons()) == ["node 'A': max_parallel 1 reached"]
    d.finished(first.id)
    second = d.next_job(NORMAL, 0)
    assert second is not None and second.pebble_id == 2


def test_a_blocked_node_does_not_block_other_nodes() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",), max_parallel=1), node("B", ("In",))))
    d.add(job("A", 1, priority=90), 0)
    d.add(job("A", 2, priority=90), 0)
    d.add(job("B", 3), 0)
    assert [d.next_job(NORMAL, 0).id for _ in range(2)] == ["1/A#1", "3/B#1"]  # type: ignore[union-attr]


def test_restrictions_hold_jobs_until_the_status_value_allows() -> None:
    status: dict[tuple[str, str], Any] = {}
    rule = parse_restriction("Geo:pending", "<3")
    d = Dispatcher(graph(node("In"), node("A", ("In",), restrictions=(rule,))),
                   lambda c, p: status.get((c, p)))
    d.add(job("A", 1), 0)
    assert d.next_job(NORMAL, 0) is None
    status[("Geo", "pending")] = 5
    assert d.next_job(NORMAL, 0) is None
    status[("Geo", "pending")] = "2"
    assert d.next_job(NORMAL, 0) is not None


def test_a_retry_waits_until_its_not_before_time() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",))))
    d.add(job("A", 1, not_before=10.0), now=5.0)
    assert d.next_job(NORMAL, 9.0) is None
    assert d.next_wakeup() == 10.0
    assert d.next_job(NORMAL, 10.0) is not None


def test_a_cancelled_queued_job_is_never_handed_out() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",))))
    d.add(job("A", 1), 0)
    d.add(job("A", 2), 0)
    d.cancel("1/A#1")
    assert drain(d) == ["2/A#1"]
    assert len(d) == 0


def test_jobs_go_only_to_their_worker_class() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",))))
    d.add(JobSpec(id="1/A#1", pebble_id=1, node="A", branch=(), attempt=1, args={},
                  priority=50, worker_class=WorkerClass.GPU), 0)
    assert d.next_job(NORMAL, 0) is None
    assert d.next_job(WorkerClass.GPU, 0) is not None


def test_a_job_queued_twice_is_handed_out_once_with_its_newest_spec() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",))))
    d.add(job("A", 1, args={"x": 1}), 0)
    d.add(job("A", 1, args={"x": 2}), 0)
    assert len(d) == 1 and d.node_load("A") == (1, 0)
    first = d.next_job(NORMAL, 0)
    assert first is not None and first.args == {"x": 2}
    assert d.next_job(NORMAL, 0) is None and len(d) == 0


def test_a_cancelled_job_queued_again_is_handed_out_once() -> None:
    d = Dispatcher(graph(node("In"), node("A", ("In",))))
    d.add(job("A", 1), 0)
    d.cancel("1/A#1")
    d.add(job("A", 1), 0)
    assert drain(d) == ["1/A#1"]
    assert len(d) == 0
