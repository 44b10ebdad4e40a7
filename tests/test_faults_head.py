"""Fault tests of the head under load: killed, stopped, restarted.

Each test drives the real ``ccworkflow`` command (or a driver that builds
the head as the runner does) in its own process session, offers load through the
``probe_feed`` input, and ends with the ledger checks C1–C10.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from harness.graphs import data_items, feed, probe, write_graph
from harness.ledger import (
    Check,
    Ledger,
    StoreView,
    assert_checks,
    c1_no_loss,
    c3_at_most_once_effect,
    c4_at_least_once_work,
    c8_store_integrity,
    c10_resources,
    executions_recorded,
    invariant_nodes_recorded,
    quiet_checks,
)
from harness.procs import HeadProcess, Processes, wait_until

KILL_CYCLES = int(os.environ.get("CRYOFLOW_KILL_CYCLES", "10"))
KILL_ITEMS = int(os.environ.get("CRYOFLOW_KILL_ITEMS", "300"))
READY_S = 15.0
"""Longest wait for a head to be ready on a busy 2-core machine."""


def pipeline(tmp_path: Path, ledger: Ledger, *, once: bool, rate: float = 0) -> Path:
    """``feed → Effect (non-idempotent) → Hash (idempotent)``."""
    return write_graph(tmp_path / "graph.json", "faults", [
        feed(ledger, once=once, rate=rate),
        probe("Effect", "probe_effect", ledger),
        probe("Hash", "probe_hash", ledger, after="Effect",
              args={"path": {"output": "In.path"}}),
    ])


def run_args(state: Path, *extra: str) -> list[str]:
    return ["--state", str(state), "--workers", "2", "--admin-workers", "0", "--no-http",
            "--loglevel", "WARNING", *extra]


def start_ready(procs: Processes, ledger: Ledger, graph: Path, state: Path,
                *extra: str, env: dict[str, str] | None = None) -> tuple[HeadProcess, float]:
    """Start a head and wait until its feed runs; return it and its start-to-ready time."""
    started = time.time()
    head = procs.ccworkflow(graph, *run_args(state, *extra), env=env)
    try:
        ready = ledger.wait_feed_started(head.pid, READY_S)
    except AssertionError:
        raise AssertionError(f"head not ready; output:\n{head.output()}") from None
    return head, ready["t"] - started


# ------------------------------------------------ the head killed at random moments


@pytest.mark.slow
def test_killing_the_head_at_random_moments_loses_nothing_and_reruns_no_finished_job(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    seed = int(os.environ.get("CRYOFLOW_KILL_SEED", random.randrange(1 << 30)))
    print(f"kill loop: seed {seed} (set CRYOFLOW_KILL_SEED to repeat)")
    rng = random.Random(seed)
    items, golden = data_items(tmp_path / "data", KILL_ITEMS)
    ledger.offer(items)
    graph, state = pipeline(tmp_path, ledger, once=False, rate=150), tmp_path / "state"
    ready_s: list[float] = []
    for _cycle in range(KILL_CYCLES):
        started = time.time()
        head = procs.ccworkflow(graph, *run_args(state))
        time.sleep(rng.uniform(0.2, 2.5))
        head.kill9()
        procs.wait_none_alive(3.0)  # the workers die with their head
        ready_s += [s["t"] - started for s in ledger.feed_starts() if s["pid"] == head.pid]
    head, last_ready = start_ready(procs, ledger, graph, state)
    ready_s.append(last_ready)
    store = StoreView(state)
    store.wait_quiet(40.0, pebbles=len(items))
    wait_until(lambda: len(ledger.acked()) == len(items), timeout_s=10, what="every ack")
    figures = assert_checks(
        *quiet_checks(ledger, store, procs.tag, roots=[state], head_pid=head.pid),
        c3_at_most_once_effect(ledger, store, "Effect", allow_uncommitted_retries=True),
        c4_at_least_once_work(ledger, store, "Hash", golden),
        executions_recorded(ledger, store),
    )
    head.send(signal.SIGTERM)
    assert head.wait(10) == 0, head.output()
    assert_checks(c10_resources(procs.tag), c8_store_integrity(store))
    print(f"kill loop: cycles={KILL_CYCLES} items={len(items)} "
          f"ready_s max={max(ready_s):.2f} mean={sum(ready_s) / len(ready_s):.2f} "
          f"readies={len(ready_s)} {figures}")
    mean_ready_s = sum(ready_s) / len(ready_s)
    assert mean_ready_s <= 3.0 and max(ready_s) <= 5.0, f"restart-to-ready {ready_s}"


def test_a_job_running_when_the_head_is_killed_is_retried_and_its_old_attempt_closed(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "slow"}])
    graph = write_graph(tmp_path / "graph.json", "running", [
        feed(ledger), probe("Sleep", "probe_sleep", ledger, args={"seconds": 1.5})])
    state = tmp_path / "state"
    store = StoreView(state)
    head = procs.ccworkflow(graph, *run_args(state))
    wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S, what="the job to start")
    wait_until(lambda: store.sql("SELECT id FROM jobs WHERE state = 'running'"),
               timeout_s=5, what="the job's start to be committed")
    head.kill9()
    procs.wait_none_alive(3.0)
    code, output = procs.run(graph, *run_args(state))
    assert code == 0, output
    rows = [(j["attempt"], j["state"], j["outcome"]) for j in store.jobs()]
    assert rows == [(1, "done", "lost"), (2, "done", "success")]
    assert sorted(m.attempt for m in ledger.markers("exec")) == [1, 2]
    assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[state]),
                  executions_recorded(ledger, store))


def test_a_job_handed_out_just_before_the_head_dies_runs_again_as_a_new_recorded_attempt(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "handed"}])
    graph = write_graph(tmp_path / "graph.json", "handed", [
        feed(ledger), probe("Sleep", "probe_sleep", ledger, args={"seconds": 1.0})])
    state = tmp_path / "state"
    store = StoreView(state)
    head = procs.ccworkflow(graph, *run_args(state))
    wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S, what="the job to start",
               interval_s=0.005)
    head.kill9()  # at once: before the worker's own start report could be committed
    procs.wait_none_alive(3.0)
    code, output = procs.run(graph, *run_args(state))
    assert code == 0, output
    rows = [(j["attempt"], j["outcome"]) for j in store.jobs()]
    assert rows == [(1, "lost"), (2, "success")]
    assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[state]),
                  executions_recorded(ledger, store))


# ------------------------------------------------ the head killed at each failpoint


def one_item_pipeline(tmp_path: Path, ledger: Ledger) -> tuple[Path, dict[str, str]]:
    items, golden = data_items(tmp_path / "data", 1)
    ledger.offer(items)
    graph = write_graph(tmp_path / "graph.json", "failpoints", [
        feed(ledger),
        probe("Effect", "probe_effect", ledger, args={"delay": 0.3}),
        probe("Hash", "probe_hash", ledger, after="Effect", args={"path": {"output": "In.path"}}),
    ])
    return graph, golden


def crash_then_finish(procs: Processes, graph: Path, state: Path, point: str) -> str:
    """Run with ``point`` set to crash, then again without; return the second output."""
    crash = {"CRYOFLOW_FAILPOINTS": f"{point}=crash@1"}
    code, output = procs.run(graph, *run_args(state), env=crash)
    assert code == 137, f"the failpoint {point} did not fire:\n{output}"
    procs.wait_none_alive(3.0)
    code, output = procs.run(graph, *run_args(state, "--report", str(state.parent / "r.json")))
    assert code == 0, output
    return output


def test_an_item_committed_but_not_acknowledged_is_offered_again_and_kept_once(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph, golden = one_item_pipeline(tmp_path, ledger)
    state = tmp_path / "state"
    crash = {"CRYOFLOW_FAILPOINTS": "post_committed_before_ack=crash@1"}
    code, output = procs.run(graph, *run_args(state), env=crash)
    assert code == 137, output
    assert ledger.acked() == {}
    store = StoreView(state)
    assert [p["item"]["probe_id"] for p in store.pebbles()] == ["p00000"]
    procs.wait_none_alive(3.0)
    code, output = procs.run(graph, *run_args(state))
    assert code == 0, output
    assert ledger.acked() == {"p00000": store.pebbles()[0]["id"]}
    assert len(store.pebbles()) == 1
    assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[state]),
                  c3_at_most_once_effect(ledger, store, "Effect"),
                  c4_at_least_once_work(ledger, store, "Hash", golden),
                  invariant_nodes_recorded(store, 3))


def test_a_result_lost_before_its_commit_is_redone_and_applied_once(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph, golden = one_item_pipeline(tmp_path, ledger)
    state = tmp_path / "state"
    crash_then_finish(procs, graph, state, "head_report_received_before_commit")
    store = StoreView(state)
    assert len(store.pebbles()) == 1 and store.pebbles()[0]["outcome"] == "completed"
    succeeded = [j for j in store.jobs() if j["node"] == "Effect" and j["outcome"] == "success"]
    assert len(succeeded) == 1, succeeded
    figures = assert_checks(
        *quiet_checks(ledger, store, procs.tag, roots=[state]),
        c3_at_most_once_effect(ledger, store, "Effect", allow_uncommitted_retries=True),
        c4_at_least_once_work(ledger, store, "Hash", golden),
        invariant_nodes_recorded(store, 3),
        executions_recorded(ledger, store))
    print(f"failpoint head_report_received_before_commit: {figures}")



# ------------------------------------------------ a restart with a large backlog

BACKLOG = int(os.environ.get("CRYOFLOW_BACKLOG", "10000"))
LEVELS = {"hi": 90, "mid": 50, "lo": 10}
DRIVER = Path(__file__).parent / "harness" / "driver.py"


def backlog_graph(tmp_path: Path, ledger: Ledger) -> Path:
    """One job per pebble, at the priority its item's ``level`` names."""
    nodes = [feed(ledger)]
    for level, priority in LEVELS.items():
        nodes.append(probe(level.title(), "probe_noop", ledger, priority=priority,
                           runIf=f"output:In.level == '{level}'"))
    return write_graph(tmp_path / "graph.json", "backlog", nodes)


def start_driver(procs: Processes, mode: str, graph: Path, state: Path,
                 ledger: Ledger) -> HeadProcess:
    argv = [sys.executable, str(DRIVER), mode, str(graph), str(state), str(ledger.root),
            "--workers", "2"]
    return procs.start(argv)


def read_record(path: Path, head: HeadProcess, timeout_s: float) -> dict[str, Any]:
    def record() -> dict[str, Any] | None:
        if not head.alive and not path.exists():
            raise AssertionError(f"the driver exited early:\n{head.output()}")
        return json.loads(path.read_text()) if path.exists() else None

    return wait_until(record, timeout_s=timeout_s, what=str(path.name), interval_s=0.01)


@pytest.mark.slow
def test_a_backlog_of_queued_pebbles_survives_a_kill_and_drains_once_in_priority_order(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    levels = list(LEVELS)
    ledger.offer({"probe_id": f"b{i:05d}", "level": levels[i % 3]} for i in range(BACKLOG))
    graph, state = backlog_graph(tmp_path, ledger), tmp_path / "state"
    first = start_driver(procs, "enqueue", graph, state, ledger)
    read_record(ledger.root / "driver-enqueued", first, 40.0)
    first.kill9()
    procs.wait_none_alive(3.0)
    assert len(ledger.acked()) == BACKLOG

    second = start_driver(procs, "resume", graph, state, ledger)
    read_record(ledger.root / "driver-ready", second, 20.0)
    ready_s = time.monotonic() - second.started
    rss_mb = psutil.Process(second.pid).memory_info().rss / 2**20
    second.send(signal.SIGUSR1)
    draining = time.monotonic()
    read_record(ledger.root / "driver-drained", second, 50.0)
    drain_s = time.monotonic() - draining
    assert second.wait(10) == 0, second.output()
    store = StoreView(state)
    figures = assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[state]),
                            exactly_once(ledger, BACKLOG))
    print(f"backlog restart: pebbles={BACKLOG} restart_to_ready={ready_s:.2f}s rss={rss_mb:.0f}MB "
          f"drain={drain_s:.1f}s {figures}")
    assert ready_s <= 5.0, f"restart to ready took {ready_s:.2f}s"
    assert rss_mb <= 200.0, f"head RSS after restart {rss_mb:.0f} MB"
    assert dispatch_order_violations(ledger, workers=2) == []


def exactly_once(ledger: Ledger, count: int) -> Check:
    check = Check("every job ran exactly once")
    runs: dict[str, int] = {}
    for marker in ledger.markers("exec"):
        runs[marker.job] = runs.get(marker.job, 0) + 1
    if len(runs) != count:
        check.fail(f"{len(runs)} jobs ran, expected {count}")
    for job, n in runs.items():
        if n != 1:
            check.fail(f"{job} ran {n} times")
    return check


def dispatch_order_violations(ledger: Ledger, *, workers: int) -> list[str]:
    """Jobs that started before the dispatcher could have reached them.

    Expected order: higher priority first, then the older pebble (FIFO). The dispatcher
    hands job k to a worker only once jobs 1..k-1 were handed out and that worker is
    free, so at least k - workers of them must have written their ``done`` marker
    before job k wrote its ``exec`` marker. Start times alone cannot show this: a
    worker may begin a job it was given a little after another worker's later job.
    """
    execs = {m.job: m.t for m in ledger.markers("exec")}
    dones = {m.job: m.t for m in ledger.markers("done")}

    def rank(job: str) -> tuple[int, int]:
        pebble, name = job.split("/")
        return -LEVELS[name.lower()], int(pebble)

    finished_before: list[float] = []
    problems = []
    for k, job in enumerate(sorted(execs, key=rank)):
        count = bisect.bisect_left(finished_before, execs[job])
        if count < k - workers:
            problems.append(f"{job} (position {k}) started when only {count} of the {k} "
                            "jobs before it had finished")
        bisect.insort(finished_before, dones.get(job, float("inf")))
    return problems[:10]


# ------------------------------------------------ SIGTERM


def sleepy_graph(tmp_path: Path, ledger: Ledger, *, seconds: float,
                 ignore_cancel: bool = False) -> Path:
    args: dict[str, Any] = {"seconds": seconds, "ignore_cancel": ignore_cancel}
    return write_graph(tmp_path / "graph.json", "sleepy", [
        feed(ledger), probe("Sleep", "probe_sleep", ledger, args=args)])


def test_sigterm_stops_the_head_within_ten_seconds_and_loses_no_pebble(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer({"probe_id": f"s{i}"} for i in range(12))
    graph, state = sleepy_graph(tmp_path, ledger, seconds=0.6), tmp_path / "state"
    head = procs.ccworkflow(graph, *run_args(state))
    wait_until(lambda: len(ledger.markers("exec")) >= 3, timeout_s=READY_S,
               what="a few jobs to start")
    stopping = time.monotonic()
    head.send(signal.SIGTERM)
    code = head.wait(12)
    stop_s = time.monotonic() - stopping
    assert code == 0, head.output()
    assert stop_s < 10.0
    procs.wait_none_alive(3.0)
    acked_before = ledger.acked()
    code, output = procs.run(graph, *run_args(state, "--report", str(tmp_path / "r.json")))
    assert code == 0, output
    report = json.loads((tmp_path / "r.json").read_text())
    assert {p["outcome"] for p in report["pebbles"]} == {"completed"}
    assert len(report["pebbles"]) == 12
    store = StoreView(state)
    assert_checks(c1_no_loss(ledger, store), *quiet_checks(ledger, store, procs.tag,
                                                           roots=[state]))
    print(f"SIGTERM to exit {stop_s:.2f}s, {len(acked_before)} acked before the stop")


def test_a_second_signal_during_a_slow_shutdown_exits_at_once(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "stubborn"}])
    graph = sleepy_graph(tmp_path, ledger, seconds=30, ignore_cancel=True)
    state = tmp_path / "state"
    head = procs.ccworkflow(graph, *run_args(state))
    wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S, what="the job to start")
    head.send(signal.SIGTERM)
    time.sleep(0.5)
    assert head.alive, "the first signal should wait for the stubborn job"
    second = time.monotonic()
    head.send(signal.SIGTERM)
    code = head.wait(5)
    assert time.monotonic() - second < 1.0
    assert code == 130, head.output()
    procs.wait_none_alive(3.0)
    assert_checks(c8_store_integrity(StoreView(state)), c10_resources(procs.tag))


# ------------------------------------------------ a damaged database


def corrupt_random(db: Path) -> str:
    db.write_bytes(random.Random(7).randbytes(16384))
    return "is not a usable cryoflow state database"


def corrupt_truncated(db: Path) -> str:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) * 3 // 4 + 100])
    return "file is truncated"


def corrupt_foreign(db: Path) -> str:
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE things(id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    return "not a cryoflow state store"


def corrupt_newer(db: Path) -> str:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    return "written by a newer cryoflow"


@pytest.mark.parametrize("damage", [corrupt_random, corrupt_truncated, corrupt_foreign,
                                    corrupt_newer], ids=lambda f: f.__name__)
def test_a_damaged_or_foreign_state_database_is_refused_with_exit_2_and_kept(
        tmp_path: Path, procs: Processes, ledger: Ledger, damage: Any) -> None:
    ledger.offer([{"probe_id": "x"}])
    graph = write_graph(tmp_path / "graph.json", "damaged", [
        feed(ledger), probe("Noop", "probe_noop", ledger)])
    state = tmp_path / "state"
    code, output = procs.run(graph, *run_args(state))
    assert code == 0, output
    db = state / "state.db"
    expected = damage(db)
    before = db.read_bytes()
    code, output = procs.run(graph, *run_args(state))
    assert code == 2, output
    assert expected in output
    assert str(db) in output or "--state" in output
    assert db.read_bytes() == before, "the damaged file was changed"
    assert "Traceback" not in output
    procs.wait_none_alive(3.0)


def test_a_write_ahead_log_left_by_a_killed_head_is_recovered(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer({"probe_id": f"w{i}"} for i in range(20))
    graph = write_graph(tmp_path / "graph.json", "wal", [
        feed(ledger, once=False), probe("Noop", "probe_noop", ledger)])
    state = tmp_path / "state"
    head, _ = start_ready(procs, ledger, graph, state)
    StoreView(state).wait_quiet(20.0, pebbles=20)
    head.kill9()
    assert (state / "state.db-wal").stat().st_size > 0
    procs.wait_none_alive(3.0)
    head, _ = start_ready(procs, ledger, graph, state)
    store = StoreView(state)
    assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[state], head_pid=head.pid))
    head.send(signal.SIGTERM)
    assert head.wait(10) == 0, head.output()


# ------------------------------------------------ two heads on one state folder


def test_a_second_head_on_one_state_folder_is_refused_until_the_first_dies(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "one"}])
    graph = write_graph(tmp_path / "graph.json", "locked", [
        feed(ledger, once=False), probe("Noop", "probe_noop", ledger)])
    state = tmp_path / "state"
    first, _ = start_ready(procs, ledger, graph, state)
    code, output = procs.run(graph, *run_args(state), timeout_s=20)
    assert code != 0
    assert f"locked by pid {first.pid}" in output
    assert first.alive
    first.kill9()
    procs.wait_none_alive(3.0)
    third, _ = start_ready(procs, ledger, graph, state)
    StoreView(state).wait_quiet(10.0, pebbles=1)
    third.send(signal.SIGTERM)
    assert third.wait(10) == 0, third.output()
    assert_checks(*quiet_checks(ledger, StoreView(state), procs.tag, roots=[state]))
