"""A graph without input nodes makes one pebble per run, keyed by its input (the options).

Re-running ``ccworkflow g.json --opts`` after a crash resumes the unfinished pebble of
the same input instead of adding a second one; a re-run after the pebble finished runs
it again; a run with other option values is a new pebble.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from apikit import served
from harness.graphs import node, probe, write_graph
from harness.ledger import Ledger
from harness.procs import Processes, wait_until
from test_cli_run import args

from cryoflow.daemon.inputs import offer_unless_unfinished

READY_S = 15.0


def _graph(tmp_path: Path, ledger: Ledger, seconds: float) -> Path:
    start = node("Start", "cmdline", None)
    sleep = probe("Sleep", "probe_sleep", ledger, after="Start", args={"seconds": seconds})
    return write_graph(tmp_path / "graph.json", "keyed", [start, sleep],
                       {"scene": {"default": "a", "help": "which scene"}})


def _pebbles(tmp_path: Path) -> list[dict[str, Any]]:
    report = json.loads((tmp_path / "report.json").read_text())
    pebbles: list[dict[str, Any]] = report["pebbles"]
    return pebbles


def test_a_rerun_after_a_kill_resumes_the_pebble_instead_of_adding_one(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = _graph(tmp_path, ledger, 30)
    head = procs.ccworkflow(graph, "--scene", "b", *args(tmp_path))
    wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S, what="the job to start")
    head.kill9()
    procs.wait_none_alive(5.0)
    _set_seconds(graph, 0.1)
    code, output = procs.run(graph, "--scene", "b", *args(tmp_path))
    assert code == 0, output
    pebbles = _pebbles(tmp_path)
    assert [(p["outcome"], p["input"]["scene"]) for p in pebbles] == [("completed", "b")], pebbles
    assert "resum" in output.lower()


def test_a_rerun_after_success_runs_again_and_other_options_make_a_new_pebble(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = _graph(tmp_path, ledger, 0.05)
    for scene in ("b", "b", "c"):
        code, output = procs.run(graph, "--scene", scene, *args(tmp_path))
        assert code == 0, output
    pebbles = _pebbles(tmp_path)
    assert [(p["outcome"], p["input"]["scene"]) for p in pebbles] == [
        ("completed", "b"), ("completed", "b"), ("completed", "c")]
    assert len(ledger.markers("done")) == 3


def _set_seconds(graph: Path, seconds: float) -> None:
    data = json.loads(graph.read_text())
    for spec in data["workflow"]["nodes"]:
        if "seconds" in spec.get("args", {}):
            spec["args"]["seconds"] = seconds
    graph.write_text(json.dumps(data))


def test_an_entry_offer_returns_the_unfinished_pebble_of_an_equal_item(tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def scenario() -> None:
        async with served(tmp_path / "state") as s:
            item = {"x": 1, "gate": str(gate)}
            first = await offer_unless_unfinished(s.head, "In", dict(item))
            assert await offer_unless_unfinished(s.head, "In", dict(item)) == first
            other = await offer_unless_unfinished(s.head, "In", {**item, "x": 2})
            assert other != first
            gate.touch()
            await s.idle()
            again = await offer_unless_unfinished(s.head, "In", dict(item))
            assert again not in (first, other)
            await s.idle()

    asyncio.run(scenario())


KILL_CYCLES = int(os.environ.get("CRYOFLOW_KILL_CYCLES", "10"))


def test_a_kill_loop_leaves_one_pebble_per_input_and_every_execution_recorded(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    """A kill loop: kill -9 the head at a random time, run again, repeat;
    then let the run finish. One command line, so one pebble, however often it died."""
    graph = _graph(tmp_path, ledger, 8)  # no run finishes before its kill (at most 3 s)
    chance = random.Random(15)
    for _ in range(KILL_CYCLES):
        head = procs.ccworkflow(graph, "--scene", "b", *args(tmp_path))
        time.sleep(chance.uniform(0.3, 3.0))
        head.kill9()
        procs.wait_none_alive(5.0)
    _set_seconds(graph, 0.1)
    code, output = procs.run(graph, "--scene", "b", *args(tmp_path))
    assert code == 0, output
    pebbles = _pebbles(tmp_path)
    assert [(p["outcome"], p["input"]["scene"]) for p in pebbles] == [("completed", "b")]
    executions = len(ledger.markers("exec"))
    attempts = pebbles[0]["nodes"]["Sleep"]["attempts"]
    print(f"kill loop: {KILL_CYCLES} kills, {len(pebbles)} pebble, {executions} executions, "
          f"{attempts} attempts recorded, {len(ledger.markers('done'))} finished")
    assert executions >= 1 and len(ledger.markers("done")) >= 1
