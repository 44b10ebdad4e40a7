"""The run path of ``ccworkflow GRAPH [--OPTION VALUE ...]``, end to end.

Every test runs the installed ``ccworkflow`` command in a subprocess on a graph written
for it, and checks the exit code, what was printed, the ``--report`` file and the
state folder.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from harness.graphs import feed, node, probe, write_graph
from harness.ledger import Ledger, StoreView, assert_checks, quiet_checks
from harness.procs import Processes, wait_until

READY_S = 15.0


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    """A folder of small modules written for these tests."""
    folder = tmp_path / "modules"
    folder.mkdir()
    write_module(folder, "echo_args", """
        ccmodule = {"description": "Return the arguments",
                    "inputs": {"count": "", "ratio": "", "label": "", "verbose": "",
                               "tags": "", "max_items": "", "src": "", "fail": ""},
                    "outputs": {"count": "", "ratio": "", "label": "", "verbose": "",
                                "tags": "", "max_items": "", "src": ""}}

        def process_task(worker, task):
            if task["args"].get("fail"):
                raise RuntimeError("asked to fail")
            return 100, dict(task["args"])
        """)
    write_module(folder, "raises", """
        ccmodule = {"description": "Raise", "inputs": {}, "outputs": {}}

        def helper_that_fails():
            raise ValueError("the input is not what this module expects")

        def process_task(worker, task):
            helper_that_fails()
        """)
    write_module(folder, "half_done", """
        ccmodule = {"description": "Stop at 42 percent", "inputs": {}, "outputs": {"n": ""}}

        def process_task(worker, task):
            return 42, {"n": 1}
        """)
    write_module(folder, "unimportable", """
        import cryoflow_no_such_package_here

        ccmodule = {"description": "Cannot be imported", "inputs": {}, "outputs": {}}

        def process_task(worker, task):
            return 100, {}
        """)
    return folder


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source).lstrip())


def args(tmp_path: Path, *extra: str, workers: int = 1) -> list[str]:
    return ["--state", str(tmp_path / "state"), "--workers", str(workers),
            "--admin-workers", "0", "--no-http", "--report", str(tmp_path / "report.json"),
            *extra]


def report(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "report.json").read_text())
    return data


def one_pebble_graph(tmp_path: Path, ledger: Ledger, *nodes: dict[str, Any],
                     options: dict[str, Any] | None = None, items: int = 1) -> Path:
    ledger.offer({"probe_id": f"i{i}"} for i in range(items))
    return write_graph(tmp_path / "graph.json", "cli", [feed(ledger), *nodes], options)


# Options


OPTIONS = {
    "count": {"default": 3, "help": "how many"},
    "ratio": {"type": "float", "default": 0.5},
    "label": {"type": "str"},
    "verbose": {"type": "bool", "default": "false"},
    "tags": {"type": "list", "default": "a"},
    "max_items": {"default": 1},
}


def echo_options_graph(tmp_path: Path, ledger: Ledger) -> Path:
    echo_args = {name: {"option": name} for name in OPTIONS}
    return one_pebble_graph(tmp_path, ledger, node("Echo", "echo_args", args=echo_args),
                            options=OPTIONS)


def test_workflow_options_become_flags_whose_values_reach_the_job(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    graph = echo_options_graph(tmp_path, ledger)
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path),
                             "--count", "7", "--ratio", "2.5", "--label", "hi", "--verbose",
                             "--tags", "x,y", "--max-items", "9")
    assert code == 0, output
    echoed = report(tmp_path)["pebbles"][0]["nodes"]["Echo"]["output"]
    assert echoed == {"count": 7, "ratio": 2.5, "label": "hi", "verbose": True,
                      "tags": ["x", "y"], "max_items": 9}


def test_options_left_out_take_their_defaults_typed_as_the_default(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    graph = echo_options_graph(tmp_path, ledger)
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path))
    assert code == 0, output
    echoed = report(tmp_path)["pebbles"][0]["nodes"]["Echo"]["output"]
    assert echoed == {"count": 3, "ratio": 0.5, "label": None, "verbose": False,
                      "tags": ["a"], "max_items": 1}


def test_an_option_of_the_wrong_type_exits_2_naming_the_option(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    graph = echo_options_graph(tmp_path, ledger)
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path),
                             "--count", "seven")
    assert code == 2, output
    assert "--count" in output and "seven" in output
    assert "Traceback" not in output
    assert not (tmp_path / "state" / "state.db").exists()


# Report and exit codes


def test_the_report_has_the_documented_shape_and_exit_code_0_when_all_complete(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = one_pebble_graph(tmp_path, ledger, probe("Noop", "probe_noop", ledger,
                                                     args={"value": 5}), items=2)
    code, output = procs.run(graph, *args(tmp_path))
    assert code == 0, output
    data = report(tmp_path)
    assert set(data) == {"workflow", "outcome", "pebbles"}
    assert (data["workflow"], data["outcome"], len(data["pebbles"])) == ("cli", "completed", 2)
    for pebble in data["pebbles"]:
        assert set(pebble) == {"id", "outcome", "input", "nodes"}
        assert pebble["input"]["probe_id"] in ("i0", "i1")
        assert set(pebble["nodes"]) == {"In", "Noop"}
        for state in pebble["nodes"].values():
            assert set(state) == {"outcome", "output", "error", "attempts"}
        assert pebble["nodes"]["Noop"]["output"]["args"]["value"] == 5


def test_exit_code_is_1_when_a_pebble_fails(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    ledger.offer([{"probe_id": "ok"}, {"probe_id": "bad", "value": True}])
    graph = write_graph(tmp_path / "graph.json", "cli", [
        feed(ledger), node("Echo", "echo_args", args={"fail": {"output": "In.value",
                                                               "default": False}})])
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path))
    assert code == 1, output
    outcomes = {p["input"]["probe_id"]: p["outcome"] for p in report(tmp_path)["pebbles"]}
    assert outcomes == {"ok": "completed", "bad": "failed"}
    assert report(tmp_path)["outcome"] == "failed"


def test_an_invalid_graph_exits_2_before_anything_runs(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = one_pebble_graph(tmp_path, ledger, node("Nope", "no_such_module_anywhere"))
    code, output = procs.run(graph, *args(tmp_path))
    assert code == 2, output
    assert "no_such_module_anywhere" in output
    assert not (tmp_path / "state").exists()


def test_ctrl_c_exits_130_after_a_clean_shutdown_and_the_next_run_finishes(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = one_pebble_graph(tmp_path, ledger, probe("Sleep", "probe_sleep", ledger,
                                                     args={"seconds": 20}), items=2)
    head = procs.ccworkflow(graph, *args(tmp_path))
    wait_until(lambda: ledger.markers("exec"), timeout_s=READY_S, what="a job to start")
    head.send(signal.SIGINT)
    assert head.wait(15) == 130, head.output()
    procs.wait_none_alive(3.0)
    assert {p["outcome"] for p in report(tmp_path)["pebbles"]} == {None}
    rewrite_seconds(graph, 0.1)
    code, output = procs.run(graph, *args(tmp_path))
    assert code == 0, output
    assert [p["outcome"] for p in report(tmp_path)["pebbles"]] == ["completed", "completed"]


def rewrite_seconds(graph: Path, seconds: float) -> None:
    data = json.loads(graph.read_text())
    for spec in data["workflow"]["nodes"]:
        if "seconds" in spec.get("args", {}):
            spec["args"]["seconds"] = seconds
    graph.write_text(json.dumps(data))


# State folder


def test_fresh_says_what_it_discards_and_keeps_the_old_database(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = one_pebble_graph(tmp_path, ledger, probe("Noop", "probe_noop", ledger), items=3)
    code, output = procs.run(graph, *args(tmp_path))
    assert code == 0, output
    code, output = procs.run(graph, *args(tmp_path, "--fresh"))
    assert code == 0, output
    assert "--fresh: set aside" in output and "(3 pebbles, 0 unfinished pebbles" in output
    backups = list((tmp_path / "state").glob("state.db.*.bak"))
    assert len(backups) == 1, output
    with closing(sqlite3.connect(backups[0])) as old:
        assert old.execute("SELECT count(*) FROM pebbles").fetchone() == (3,)


def test_a_run_killed_with_sigkill_resumes_its_unfinished_pebbles_without_redoing_work(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = one_pebble_graph(tmp_path, ledger, probe("Sleep", "probe_sleep", ledger,
                                                     args={"seconds": 0.4}), items=6)
    head = procs.ccworkflow(graph, *args(tmp_path))
    wait_until(lambda: len(ledger.markers("done")) >= 2, timeout_s=READY_S,
               what="two jobs to finish")
    head.kill9()
    procs.wait_none_alive(3.0)
    code, output = procs.run(graph, *args(tmp_path))
    assert code == 0, output
    assert [p["outcome"] for p in report(tmp_path)["pebbles"]] == ["completed"] * 6
    store = StoreView(tmp_path / "state")
    assert_checks(*quiet_checks(ledger, store, procs.tag, roots=[tmp_path / "state"]))


def test_a_state_folder_written_by_a_newer_version_is_refused_with_exit_2(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    graph = one_pebble_graph(tmp_path, ledger, probe("Noop", "probe_noop", ledger))
    code, output = procs.run(graph, *args(tmp_path))
    assert code == 0, output
    with closing(sqlite3.connect(tmp_path / "state" / "state.db")) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
        conn.commit()
    code, output = procs.run(graph, *args(tmp_path))
    assert code == 2, output
    assert "newer cryoflow" in output and "schema version 999" in output
    assert "Traceback" not in output


# Modules that misbehave


def test_a_module_that_raises_fails_its_node_with_the_traceback_kept(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    graph = one_pebble_graph(tmp_path, ledger, node("Raise", "raises"))
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path))
    assert code == 1, output
    state = report(tmp_path)["pebbles"][0]["nodes"]["Raise"]
    assert state["outcome"] == "error"
    assert "ValueError: the input is not what this module expects" in state["error"]
    job = StoreView(tmp_path / "state").jobs()[0]
    assert "helper_that_fails" in job["stats"]["traceback"]
    assert "helper_that_fails" in json.dumps(state), "the report should show the traceback"


def test_a_module_returning_progress_42_fails_its_node_saying_so(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    graph = one_pebble_graph(tmp_path, ledger, node("Half", "half_done"))
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path))
    assert code == 1, output
    state = report(tmp_path)["pebbles"][0]["nodes"]["Half"]
    assert state["outcome"] == "error"
    assert state["error"] == "module returned progress 42 (expected 100)"


def test_a_module_that_cannot_be_imported_fails_its_node_while_other_nodes_keep_working(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    graph = one_pebble_graph(tmp_path, ledger, node("Broken", "unimportable"),
                             probe("Fine", "probe_noop", ledger), items=2)
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path))
    assert code == 1, output
    for pebble in report(tmp_path)["pebbles"]:
        broken, fine = pebble["nodes"]["Broken"], pebble["nodes"]["Fine"]
        assert broken["outcome"] == "error"
        assert "cryoflow_no_such_package_here" in broken["error"]
        assert fine["outcome"] == "success"


def test_an_argument_that_cannot_be_resolved_fails_the_job_naming_the_argument(
        tmp_path: Path, procs: Processes, ledger: Ledger, modules: Path) -> None:
    graph = one_pebble_graph(tmp_path, ledger,
                             node("Echo", "echo_args", args={"src": {"output": "In.path"}}))
    code, output = procs.run(graph, "--modules", str(modules), *args(tmp_path))
    assert code == 1, output
    state = report(tmp_path)["pebbles"][0]["nodes"]["Echo"]
    assert state["outcome"] == "error"
    assert "argument 'src' of node 'Echo'" in state["error"]
    assert "'In.path' is missing" in state["error"]
