"""Cloudmesh flow parity: flow strings, workflow classes, YAML flows, records, the pool."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import flows
import pytest

import cryoflow
from cryoflow import BaseWorkFlow, Workflow
from cryoflow.api.views import display_of
from cryoflow.cli import status
from cryoflow.errors import GraphValidationError
from cryoflow.pyapi.calls import CallableError
from cryoflow.pyapi.records import NodeStatus, RunFailed, RunStatus
from cryoflow.pyapi.workflow import start_flow


def test_from_cryoflow_import_workflow_runs_a_flow_string_of_functions(tmp_path: Path) -> None:
    record = cryoflow.Workflow("a; b || c", a=flows.fa, b=flows.fb, c=flows.fc).run(
        inline=True, state_dir=tmp_path)
    assert record.status is RunStatus.FINISHED
    assert record.results == {"a": 1, "b": 11, "c": 101}


def test_a_workflow_class_runs_its_public_methods_as_nodes(tmp_path: Path) -> None:
    record = flows.MyFlow().run("a; b || c", inline=True, state_dir=tmp_path)
    assert record.results == {"a": "a", "b": "ab", "c": "ac"}
    assert set(flows.MyFlow().nodes()) == {"a", "b", "c"}


def test_or_binds_tighter_than_sequence(tmp_path: Path) -> None:
    record = Workflow("a; b || c", a=flows.fa, b=flows.fb, c=flows.fc).run(
        inline=True, state_dir=tmp_path)
    assert {n: record.nodes[n].dependencies for n in "abc"} == {"a": (), "b": ("a",),
                                                                "c": ("a",)}


def test_sequenced_groups_wait_for_every_node_of_the_group_before(tmp_path: Path) -> None:
    record = Workflow("(a || b); (c || d)", a=flows.fa, b=flows.fa, c=flows.fd,
                      d=flows.fd).run(inline=True, state_dir=tmp_path)
    assert record.nodes["c"].dependencies == record.nodes["d"].dependencies == ("a", "b")
    assert record.results["c"] == record.results["d"] == [1, 1]


def test_names_may_have_digits_and_underscores_and_a_single_bar_is_parallel(
        tmp_path: Path) -> None:
    record = Workflow("step_1; step_2a | _x9", step_1=flows.fa, step_2a=flows.fa,
                      _x9=flows.fa).run(inline=True, state_dir=tmp_path)
    assert record.nodes["step_2a"].dependencies == record.nodes["_x9"].dependencies == (
        "step_1",)
    assert record.status is RunStatus.FINISHED


def test_an_unknown_name_in_the_flow_is_an_error_that_points_at_it() -> None:
    with pytest.raises(GraphValidationError, match=r"step 'b' \(column 4\).*functions: a"):
        Workflow("a; b", a=flows.fa).graph()


def test_a_return_value_is_the_output_and_the_dict_form_restyles_the_node(
        tmp_path: Path) -> None:
    record = Workflow("a; b", a=flows.styled, b=flows.fd).run(inline=True, state_dir=tmp_path)
    styled = record.nodes["a"]
    assert styled.result == flows.styled()
    assert display_of(styled.output) == {"color": "green", "shape": "circle", "label": "a",
                                         "value": {"x": [1, 2.5, None]}}
    assert record.results["b"] == [flows.styled()]


def test_a_failing_function_stops_its_dependents_and_the_run_says_which_never_started(
        tmp_path: Path) -> None:
    record = Workflow("a; b || c; d", a=flows.fa, b=flows.boom, c=flows.fa, d=flows.fd).run(
        inline=True, state_dir=tmp_path)
    assert record.status is RunStatus.FAILED
    assert record.failed == ("b",) and record.never_started == ("d",)
    assert "ValueError: boom went a" in (record.nodes["b"].error or "")
    assert "b failed" in record.summary() and "never started: d" in record.summary()
    with pytest.raises(RunFailed, match="never started: d"):
        record.raise_for_status()


def test_a_yaml_file_with_name_flow_and_tasks_defines_a_flow(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text("def one():\n    return 1\n\n"
                                       "def add(a, n=0):\n    return a + n\n")
    (tmp_path / "demo.yaml").write_text(
        "name: demo\nflow: a; b\ntasks:\n  a: steps:one\n"
        "  b: {function: 'steps:add', kwargs: {n: 41}}\n")
    flow = Workflow.from_yaml(tmp_path / "demo.yaml", state_dir=tmp_path / "state")
    record = flow.run(inline=True)
    assert (flow.name, record.results) == ("demo", {"a": 1, "b": 42})


def test_the_definition_is_stored_with_every_node_defined(tmp_path: Path) -> None:
    flow = Workflow("a; b || c", name="test", state_dir=tmp_path, a=flows.fa, b=flows.fb,
                    c=flows.fc)
    flow.run(inline=True)
    definition = flow.definition()
    assert [(d["name"], d["dependencies"], d["status"]) for d in definition] == [
        ("a", [], "defined"), ("b", ["a"], "defined"), ("c", ["a"], "defined")]
    assert definition[0]["cm"]["collection"] == "test-flow"


def test_every_run_is_a_separate_active_record_holding_each_result(tmp_path: Path) -> None:
    flow = Workflow("a; b", name="test", state_dir=tmp_path, a=flows.fa, b=flows.fb)
    first, second = flow.run(inline=True), flow.run(inline=True)
    assert first.run_id != second.run_id
    for run in (first.run_id, second.run_id):
        active = flow.active(run)
        assert [(a["name"], a["status"], a["result"]) for a in active] == [
            ("a", "finished", 1), ("b", "finished", 11)]
        assert active[0]["cm"]["collection"] == "test-flow-active"


def test_active_statuses_move_from_pending_to_running_to_finished(tmp_path: Path) -> None:
    gate, seen = threading.Event(), threading.Event()

    def wait() -> str:
        seen.set()
        assert gate.wait(10)
        return "open"

    flow = Workflow("w; b", name="gated", state_dir=tmp_path, w=wait, b=flows.fd)
    run = start_flow(flow.graph(), flow.functions, inline=True, state_dir=tmp_path)
    assert seen.wait(10)
    assert _statuses(flow, run.run_id) == {"w": "running", "b": "pending"}
    gate.set()
    assert run.wait(10).status is RunStatus.FINISHED
    assert _statuses(flow, run.run_id) == {"w": "finished", "b": "finished"}


def _statuses(flow: Workflow, run_id: int | None) -> dict[str, str]:
    assert run_id is not None
    return {a["name"]: a["status"] for a in flow.active(run_id)}


def test_a_failed_node_is_error_and_the_nodes_after_it_skipped_in_the_active_record(
        tmp_path: Path) -> None:
    flow = Workflow("a; b", name="bad", state_dir=tmp_path, a=flows.boom, b=flows.fd)
    flow.run(inline=True)
    assert _statuses(flow, 1) == {"a": "error", "b": "skipped"}


def test_functions_run_in_the_worker_pool_unless_inline(tmp_path: Path) -> None:
    pool = Workflow("p", p=flows.pid).run(state_dir=tmp_path / "pool", workers=1)
    inline = Workflow("p", p=flows.pid).run(inline=True, state_dir=tmp_path / "inline")
    assert pool.results["p"] != os.getpid()
    assert inline.results["p"] == os.getpid()


def test_a_lambda_cannot_run_in_the_pool_and_the_error_suggests_inline(tmp_path: Path) -> None:
    with pytest.raises(CallableError, match=r"'a' is a lambda.*run\(inline=True\)"):
        Workflow("a", a=lambda: 1).run(state_dir=tmp_path)
    assert Workflow("a", a=lambda: 1).run(inline=True, state_dir=tmp_path).results == {"a": 1}


def test_an_inline_workflow_class_calls_the_methods_of_the_very_instance(
        tmp_path: Path) -> None:
    class Counter(BaseWorkFlow):
        def __init__(self) -> None:
            self.calls: list[str] = []

        def a(self) -> None:
            self.calls.append("a")

        def b(self) -> None:
            self.calls.append("b")

    counter = Counter()
    counter.run("a; b", inline=True, state_dir=tmp_path)
    assert counter.calls == ["a", "b"]


def test_a_run_that_outlives_its_timeout_returns_the_unfinished_record(tmp_path: Path) -> None:
    gate = threading.Event()
    flow = Workflow("w", name="slow", state_dir=tmp_path, w=lambda: gate.wait(10))
    run = start_flow(flow.graph(), flow.functions, inline=True, state_dir=tmp_path)
    record = run.wait(0.2)
    assert record.status is RunStatus.RUNNING and record.nodes["w"].status is NodeStatus.RUNNING
    gate.set()
    assert run.wait(10).status is RunStatus.FINISHED


def test_the_runs_appear_in_the_web_view_and_ccstatus_like_any_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gate, seen = threading.Event(), threading.Event()

    def wait() -> int:
        seen.set()
        gate.wait(10)
        return 7

    flow = Workflow("w; b", name="viewed", state_dir=tmp_path, w=wait, b=flows.fd)
    run = start_flow(flow.graph(), flow.functions, inline=True, state_dir=tmp_path, serve=True)
    assert seen.wait(10) and run.api_url is not None
    definition, active = asyncio.run(_get_views(run.api_url, run.run_id))
    gate.set()
    run.wait(10)
    assert [d["status"] for d in definition["items"]] == ["defined", "defined"]
    assert [(a["name"], a["status"]) for a in active["items"]] == [("w", "running"),
                                                                   ("b", "pending")]
    assert status.main(["--state", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pebbles"]["completed"] == 1 and summary["workflow"] == "viewed"


async def _get_views(url: str, run_id: int | None) -> tuple[Any, Any]:
    """The definition, and the active view once the job's start is committed."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}api/v1/workflow/definition") as r:
            definition = await r.json()
        for _ in range(100):
            async with session.get(f"{url}api/v1/workflow/active?pebble={run_id}") as r:
                active = await r.json()
            if active["items"][0]["status"] == "running":
                break
            await asyncio.sleep(0.05)
    return definition, active


DOCS = Path(__file__).resolve().parents[1] / "docs" / "python.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_every_code_block_of_the_python_docs_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BLOCK.findall(DOCS.read_text())
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CRYOFLOW_URL", "")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for index, (language, code) in enumerate(blocks):
        where = f"docs/python.md block {index + 1} ({language})"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)
        else:
            _run_bash(code, tmp_path, where)


def _run_bash(code: str, folder: Path, where: str) -> None:
    root = Path(__file__).resolve().parents[1]
    command = f'"{sys.executable}" -m cryoflow.cli.main'
    preamble = f'set -euo pipefail\ncryoflow() {{ {command} "$@"; }}\n'
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(folder)])}
    done = subprocess.run(["bash", "-c", preamble + code], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
