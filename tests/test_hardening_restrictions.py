"""Restriction values are checked when the graph is read; a held job says what holds it.

A restriction's value is a number (at most 40 characters, finite), a name (letters,
digits, ``_ . -``, at most 100 characters) or a quoted string (at most 200 characters),
and its channel is a node of the graph. Anything else fails ``--validate``. At run time a
node whose queued jobs a restriction holds is named in one log line per change, in the
API's workflow and job views (``held``) and in the web view.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from apikit import ServedInThread, served, until
from enginekit import graph, node
from test_webview import Watched, browser, page

from cryoflow.cli.workflow import main
from cryoflow.errors import ExprError
from cryoflow.graph.expr import parse_restriction
from cryoflow.graph.model import Graph

__all__ = ["browser", "page"]  # fixtures used by name

MODULES = Path(__file__).parent / "data" / "modules"


@pytest.mark.parametrize(("condition", "message"), [
    ("<9**9**9", "'9**9**9' is neither a number nor a name"),
    ("<" + "7" * 5000, "a number of at most 40 characters, not one of 5000"),
    ("<1e999", "'1e999' is too large a number"),
    ("== busy now", "'busy now' is neither a number nor a name"),
    ("==" + "n" * 101, "a name of at most 100 characters, not one of 101"),
    ("=='" + "q" * 201 + "'", "a quoted string of at most 200 characters, not one of 201"),
])
def test_a_restriction_value_that_is_no_number_or_name_is_refused(
        condition: str, message: str) -> None:
    with pytest.raises(ExprError, match="restriction") as caught:
        parse_restriction("Geo:pending", condition)
    assert message in str(caught.value)


@pytest.mark.parametrize(("condition", "value"), [
    ("<3", 3), (">= -2.5e3", -2500.0), ("==idle", "idle"), ("==S1A_0001.SAFE", "S1A_0001.SAFE"),
    ("== 'busy now'", "busy now"), ('!="x<y"', "x<y"), ("<" + "9" * 40, int("9" * 40)),
])
def test_numbers_names_and_quoted_strings_within_limits_are_accepted(
        condition: str, value: Any) -> None:
    assert parse_restriction("Geo:pending", condition).value == value


def _graph_file(tmp_path: Path, restrictions: dict[str, str]) -> Path:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"workflow": {"name": "r", "nodes": [
        {"name": "In", "module": "source", "args": {"items": [1]}},
        {"name": "W", "module": "work", "downstreamOf": ["In"], "restrictions": restrictions},
    ]}}))
    return path


@pytest.mark.parametrize(("restrictions", "message"), [
    ({"W:pending": "<9**9**9"}, "'9**9**9' is neither a number nor a name"),
    ({"W:pending": "<" + "1" * 5000}, "a number of at most 40 characters"),
    ({"Geocode:pending": "<3"},
     "reads the channel 'Geocode', which is no node of this graph"),
    ({"NodeController.seer3:cache.free": ">5"},
     "reads the channel 'NodeController.seer3', which is no node of this graph"),
])
def test_validate_fails_a_bad_restriction_with_a_clear_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], restrictions: dict[str, str],
        message: str) -> None:
    code = main([str(_graph_file(tmp_path, restrictions)), "--validate",
                 "--modules", str(MODULES)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_validate_accepts_a_restriction_on_a_node_of_the_graph(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _graph_file(tmp_path, {"W:pending": "<3", "In:state": "==ready"})
    assert main([str(path), "--validate", "--modules", str(MODULES)]) == 0, capsys.readouterr()


OPENER = '''
import os, time

def process_task(worker, task):
    deadline = time.monotonic() + 10
    while not os.path.exists(task["args"]["gate"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.status["open"] = 1
    return 100, {}
'''


REASON = 'restriction "Opener:open": "==1" does not hold'


def _gated_graph(tmp_path: Path) -> Graph:
    """``In → Opener`` and ``In → A``; A waits until Opener's job publishes ``open`` = 1,
    which it does once the file ``gate`` (an item key) exists."""
    module = tmp_path / "opener.py"
    module.write_text(OPENER)
    rule = parse_restriction("Opener:open", "==1")
    return graph(node("In", module="cmdline"),
                 node("Opener", ("In",), module="opener", module_ref=str(module),
                      args={"gate": {"output": "In.gate"}}),
                 node("A", ("In",), restrictions=(rule,)))


def test_a_held_job_says_which_restriction_holds_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gate = tmp_path / "gate"
    g = _gated_graph(tmp_path)
    reason = REASON
    caplog.set_level(logging.INFO, logger="cryoflow")

    async def scenario() -> None:
        async with served(tmp_path / "state", g) as s:
            await s.offer(gate=str(gate))
            await s.offer(gate=str(gate))

            async def a_is_held() -> bool:
                status, page = await s.get("/api/v1/jobs?state=queued&node=A")
                return status == 200 and len(page["items"]) == 2 and all(
                    item["held"] == reason for item in page["items"])

            await until(a_is_held)
            first = (await s.get("/api/v1/jobs?state=queued&node=A"))[1]["items"][0]["id"]
            job_id = quote(first, safe="")
            assert (await s.get(f"/api/v1/jobs/{job_id}"))[1]["held"] == reason
            nodes = {n["name"]: n for n in (await s.get("/api/v1/workflow"))[1]["nodes"]}
            assert nodes["A"]["held"] == reason and nodes["Opener"]["held"] is None
            gate.touch()
            await s.idle()
            nodes = {n["name"]: n for n in (await s.get("/api/v1/workflow"))[1]["nodes"]}
            assert nodes["A"]["held"] is None and nodes["A"]["counts"] == {"success": 2}
            done = (await s.get(f"/api/v1/jobs/{job_id}"))[1]
            assert done["state"] == "done" and done["held"] is None

    asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if "node 'A'" in r.getMessage()]
    assert said == [f"node 'A' waits: {reason}", "node 'A' no longer waits"], said


def test_the_web_view_shows_which_restriction_holds_a_node(
        tmp_path: Path, page: Watched) -> None:
    gate = tmp_path / "gate"
    server = ServedInThread(tmp_path / "state", _gated_graph(tmp_path))
    try:
        server.run(server.served.offer(gate=str(gate)))
        page.open(server.url)
        page.page.wait_for_selector('g.node[data-node="A"].held', timeout=10_000)
        title = page.page.text_content('g.node[data-node="A"] title')
        assert title == f"A: waits, {REASON}"
        page.page.click('g.node[data-node="A"]')
        page.page.wait_for_selector(f'dd:text-is({json.dumps(REASON)})', timeout=10_000)
        gate.touch()
        server.run(server.served.idle())
        page.page.wait_for_selector('g.node[data-node="A"][data-status="finished"]:not(.held)',
                                    timeout=10_000)
        assert page.errors == []
    finally:
        server.close()
