"""``cryoflow flow``: Cloudmesh's list, add, run, node add/delete, edge add/delete/invert, view."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cryoflow.cli.main import main
from cryoflow.pyapi.catalog import FlowCatalog

STEPS = """\
def fetch():
    return 2

def clean(fetch):
    return fetch * 10

def report(inputs):
    return sum(x or 0 for x in inputs)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "demo.yaml").write_text(
        "name: demo\nflow: fetch; clean || report\nmodule: steps\n")
    return tmp_path / "flows"


def flow(root: Path, *args: str) -> int:
    return main(["flow", "--root", str(root), *args])


def nodes(root: Path) -> dict[str, tuple[str, ...]]:
    with FlowCatalog(root / "demo") as catalog:
        return dict(catalog.definition().nodes)


def test_flow_add_stores_the_yaml_flow_and_flow_list_shows_it(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert flow(root, "add", str(root.parent / "demo.yaml")) == 0
    assert flow(root, "list") == 0
    assert "demo  3 nodes  0 runs  last: never run" in capsys.readouterr().out
    assert flow(root, "list", "demo") == 0
    out = capsys.readouterr().out
    assert "flow demo: fetch; clean || report" in out
    assert "clean  after: fetch  function: steps:clean" in out


def test_flow_run_runs_the_stored_flow_in_the_worker_pool(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow(root, "add", str(root.parent / "demo.yaml"))
    assert flow(root, "run", "demo", "--workers", "1") == 0
    out = capsys.readouterr().out
    assert "run 1 of demo finished" in out and "clean  finished  20" in out
    with FlowCatalog(root / "demo") as catalog:
        assert [(a["name"], a["status"], a["result"]) for a in catalog.active_objects(1)] == [
            ("fetch", "finished", 2), ("clean", "finished", 20), ("report", "finished", 2)]


def test_flow_run_exits_1_and_names_the_node_when_a_function_fails(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root.parent / "bad.yaml").write_text(
        "name: demo\nflow: fetch; clean\ntasks:\n  fetch: steps:nothing\n  clean: steps:clean\n")
    flow(root, "add", str(root.parent / "bad.yaml"))
    assert flow(root, "run", "demo", "--inline") == 1
    out = capsys.readouterr().out
    assert "fetch failed" in out and "never started: clean" in out


def test_flow_node_add_and_delete_change_the_definition(root: Path) -> None:
    flow(root, "add", str(root.parent / "demo.yaml"))
    assert flow(root, "node", "add", "extra", "--flow", "demo", "--function", "steps:fetch",
                "--after", "clean") == 0
    assert nodes(root)["extra"] == ("clean",)
    assert flow(root, "node", "delete", "clean", "--flow", "demo") == 0
    assert nodes(root) == {"fetch": (), "report": ("fetch",), "extra": ()}


def test_flow_edge_add_delete_and_invert_change_the_dependencies(root: Path) -> None:
    flow(root, "add", str(root.parent / "demo.yaml"))
    assert flow(root, "edge", "add", "clean", "report", "--flow", "demo") == 0
    assert nodes(root)["report"] == ("fetch", "clean")
    assert flow(root, "edge", "delete", "fetch", "report", "--flow", "demo") == 0
    assert nodes(root)["report"] == ("clean",)
    assert flow(root, "edge", "invert", "clean", "report", "--flow", "demo") == 0
    assert nodes(root)["clean"] == ("fetch", "report") and nodes(root)["report"] == ()


def test_an_edge_that_would_close_a_cycle_is_refused(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow(root, "add", str(root.parent / "demo.yaml"))
    assert flow(root, "edge", "add", "clean", "fetch", "--flow", "demo") == 2
    assert "cycle: fetch -> clean -> fetch" in capsys.readouterr().err
    assert nodes(root)["fetch"] == ()


def test_an_edited_flow_runs_as_edited(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow(root, "add", str(root.parent / "demo.yaml"))
    flow(root, "edge", "add", "clean", "report", "--flow", "demo")
    assert flow(root, "run", "demo", "--inline") == 0
    assert "report  finished  22" in capsys.readouterr().out


def test_an_unknown_flow_is_an_error_that_lists_the_flows(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow(root, "add", str(root.parent / "demo.yaml"))
    assert flow(root, "run", "nope") == 2
    assert "there is no flow 'nope'" in capsys.readouterr().err


def test_flow_view_serves_the_web_view_of_the_flow(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow(root, "add", str(root.parent / "demo.yaml"))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(
        flow(root, "view", "demo", "--no-browser", "--seconds", "2")))
    thread.start()
    url = None
    deadline = time.monotonic() + 10
    while url is None and time.monotonic() < deadline:
        found = re.search(r"web view of demo: (\S+)", capsys.readouterr().out)
        url = found.group(1) if found else None
        time.sleep(0.05)
    assert url is not None
    with urllib.request.urlopen(url + "api/v1/workflow/definition", timeout=10) as response:
        items = json.load(response)["items"]
    thread.join(10)
    assert [i["name"] for i in items] == ["fetch", "clean", "report"] and codes == [0]
