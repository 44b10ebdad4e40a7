"""Fault tests of local workers killed, hung or lost.

Each test runs the real ``ccworkflow`` command with probe modules, hurts a worker or
its job, and checks what the store, the report and the process table show afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from harness.graphs import feed, probe, write_graph
from harness.ledger import (
    Ledger,
    StoreView,
    assert_checks,
    c3_at_most_once_effect,
    c10_resources,
    quiet_checks,
)
from harness.procs import JOB_ENV, Processes, wait_until

READY_S = 15.0


def run_args(tmp_path: Path, workers: int = 2, *extra: str) -> list[str]:
    return ["--state", str(tmp_path / "state"), "--workers", str(workers),
            "--admin-workers", "0", "--no-http", "--loglevel", "WARNING",
            "--report", str(tmp_path / "report.json"), *extra]


def report_node(tmp_path: Path, node: str, pebble: int = 0) -> dict[str, Any]:
    report = json.loads((tmp_path / "report.json").read_text())
    nodes: dict[str, Any] = report["pebbles"][pebble]["nodes"]
    return nodes[node]


def job_rows(store: StoreView, node: str) -> list[tuple[int, str | None]]:
    return [(j["attempt"], j["outcome"]) for j in store.jobs() if j["node"] == node]


# ------------------------------------------------ a worker killed mid-job


def test_a_worker_killed_mid_job_is_replaced_and_the_job_retried_to_success(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "victim"}])
    graph = write_graph(tmp_path / "graph.json", "workerkill", [
        feed(ledger),
        probe("Sleep", "probe_sleep", ledger, args={"seconds": 2}),
        probe("Effect", "probe_effect", ledger, after="Sleep"),
    ])
    head = procs.ccworkflow(graph, *run_args(tmp_path))
    first = wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S,
                       what="the job to start")[0]
    time.sleep(0.3)
    killed = time.monotonic()
    os.killpg(first.pid, signal.SIGKILL)
    wait_until(lambda: any(m.attempt == 2 for m in ledger.markers("exec")), timeout_s=5,
               what="the retry")
    retry_s = time.monotonic() - killed
    assert head.wait(30) == 0, head.output()
    node = report_node(tmp_path, "Sleep")
    store = StoreView(tmp_path / "state")
    assert node["outcome"] == "success"
    assert job_rows(store, "Sleep") == [(1, "lost"), (2, "success")]
    lost = next(job for job in store.jobs() if job["id"] == "1/Sleep#1")
    assert "died with signal 9" in (lost["error"] or "")
    assert retry_s <= 1.5, f"the retry started {retry_s:.2f}s after the kill"
    assert sorted(m.attempt for m in ledger.markers("exec") if m.job == "1/Sleep") == [1, 2]
    assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[tmp_path / "state"]),
                  c3_at_most_once_effect(ledger, store, "Effect"))


def test_a_worker_killed_alone_takes_its_job_s_children_with_it(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "parent"}])
    graph = write_graph(tmp_path / "graph.json", "orphans", [
        feed(ledger), probe("Spawn", "probe_spawn", ledger, timeout=1)])
    head = procs.ccworkflow(graph, *run_args(tmp_path, 1))
    first = wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S,
                       what="the job to start")[0]
    wait_until(lambda: jobs_processes(procs, first.record["job_id"]), timeout_s=5,
               what="the job's children")
    os.kill(first.pid, signal.SIGKILL)  # the worker only, not its process group
    assert head.wait(30) == 1, head.output()
    procs.wait_none_alive(3.0)


def jobs_processes(procs: Processes, job_id: str) -> list[int]:
    return [pid for pid, env in procs.alive().items() if env.get(JOB_ENV) == job_id]


# ------------------------------------------------ a job past its timeout


@pytest.mark.parametrize("trap", [False, True], ids=["plain", "sigterm-trapped"])
def test_a_job_past_its_timeout_is_killed_with_its_grandchildren_and_frees_its_slot(
        tmp_path: Path, procs: Processes, ledger: Ledger, trap: bool) -> None:
    ledger.offer([{"probe_id": "hang", "value": "spawn"}, {"probe_id": "next", "value": "noop"}])
    graph = write_graph(tmp_path / "graph.json", "timeout", [
        feed(ledger),
        probe("Spawn", "probe_spawn", ledger, args={"trap": trap}, timeout=2,
              runIf="output:In.value == 'spawn'"),
        probe("Noop", "probe_noop", ledger, runIf="output:In.value == 'noop'"),
    ])
    head = procs.ccworkflow(graph, *run_args(tmp_path, 1))
    spawn = wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S,
                       what="the job to start")[0]
    job_id = spawn.record["job_id"]
    wait_until(lambda: len(jobs_processes(procs, job_id)) >= 3, timeout_s=5,
               what="the shell and its two sleeps")
    wait_until(lambda: not jobs_processes(procs, job_id), timeout_s=6,
               what="the timed-out job's processes to be gone")
    killed_s = time.time() - spawn.t
    assert head.wait(30) == 1, head.output()
    node = report_node(tmp_path, "Spawn")
    assert (node["outcome"], node["error"]) == ("timeout", "timeout after 2s")
    store = StoreView(tmp_path / "state")
    finished = next(j["finished"] for j in store.jobs() if j["node"] == "Spawn")
    noop = next(m for m in ledger.markers("exec") if m.job.endswith("/Noop"))
    slot_s = noop.t - finished
    print(f"timeout trap={trap}: killed {killed_s:.2f}s after start, next job {slot_s:.2f}s "
          "after the timeout")
    assert killed_s <= 2 + 2 + 0.5 + 0.5
    procs.wait_none_alive(3.0)
    assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[tmp_path / "state"]))
    assert slot_s <= 1.0, f"the next job started {slot_s:.2f}s after the timeout"


# ------------------------------------------------ a job flooding its output


def test_a_job_flooding_stdout_keeps_the_head_small_and_its_log_capped(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "flood"}])
    graph = write_graph(tmp_path / "graph.json", "flood", [
        feed(ledger),
        probe("Wait", "probe_sleep", ledger, args={"seconds": 1.0}),
        probe("Flood", "probe_flood", ledger, after="Wait", args={"mb": 200}),
    ])
    head = procs.ccworkflow(graph, *run_args(tmp_path, 1))
    ledger.wait_feed_started(head.pid, READY_S)
    process = psutil.Process(head.pid)
    baseline = process.memory_info().rss
    peak = baseline
    while head.alive:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    assert head.wait(1) == 0, head.output()
    rise_mb = (peak - baseline) / 2**20
    store = StoreView(tmp_path / "state")
    with store.reader() as reader:
        lines = reader.logs(node="Flood", limit=100000)
    logged = sum(len(line["message"]) for line in lines)
    print(f"flood 200 MB: head RSS rose {rise_mb:.1f} MB, {logged} bytes logged")
    assert report_node(tmp_path, "Flood")["outcome"] == "success"
    assert rise_mb < 50.0
    assert logged <= 2 * 2**20
    assert any("dropped" in line["message"] for line in lines)
    procs.wait_none_alive(3.0)


def test_an_allocation_beyond_the_memory_limit_fails_the_job_with_a_clear_error(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "big"}])
    graph = write_graph(tmp_path / "graph.json", "alloc", [
        feed(ledger),
        probe("Alloc", "probe_alloc", ledger, args={"mb": 1024, "limit_mb": 512}),
        probe("After", "probe_noop", ledger, runOn="error", after="Alloc"),
    ])
    code, output = procs.run(graph, *run_args(tmp_path, 1))
    node = report_node(tmp_path, "Alloc")
    assert (node["outcome"], node["attempts"]) == ("error", 1), node
    assert "MemoryError" in node["error"]
    assert report_node(tmp_path, "After")["outcome"] == "success"
    assert code == 0, output
    procs.wait_none_alive(3.0)


def test_a_job_whose_worker_is_lost_three_times_ends_in_error_instead_of_looping(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    ledger.offer([{"probe_id": "poison"}])
    graph = write_graph(tmp_path / "graph.json", "poison", [
        feed(ledger), probe("Alloc", "probe_alloc", ledger, args={"mb": 20, "oom": True})])
    code, output = procs.run(graph, *run_args(tmp_path, 1), timeout_s=40)
    assert code == 1, output
    node = report_node(tmp_path, "Alloc")
    assert node["outcome"] == "error"
    assert "lost" in node["error"] or "died" in node["error"], node["error"]
    assert sorted(m.attempt for m in ledger.markers("exec")) == [1, 2, 3]
    assert not ledger.markers("done")
    assert_checks(c10_resources(procs.tag))
