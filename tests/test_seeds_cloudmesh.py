"""The Cloudmesh flow seed's code runs on cryoflow with at most its import line changed.

The snippets are copies from the seed document cloudmesh-flow.rst, kept in
tests/data/seeds/ (each file names its section). The seed's pseudo-code
(``def a (); print("a"); ...; w = workflow("a; b | c")``) is not Python and is not run;
its flow string is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cryoflow import Workflow
from cryoflow.api.views import display_of
from cryoflow.errors import GraphError
from cryoflow.pyapi.workflow import start_flow
from cryoflow.pyapi.yamlflow import read_flow_file

SEEDS = Path(__file__).parent / "data" / "seeds"
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


def run_snippet(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile((SEEDS / name).read_text(), name, "exec"), namespace)  # noqa: S102
    return namespace


def test_the_seeds_workflow_class_runs_a_then_b_and_c_together(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = run_snippet("cloudmesh_myflow.py")
    slept: list[tuple[float, float, float]] = []

    def sleep(seconds: float) -> None:  # the seed's sleeps, 25 times shorter
        started = time.monotonic()
        time.sleep(seconds / 25)
        slept.append((seconds, started, time.monotonic()))

    namespace["time"] = types.SimpleNamespace(sleep=sleep)
    record = namespace["MyFlow"]().run("(a; b || c)", inline=True, state_dir=tmp_path)
    assert record.status.value == "finished"
    assert {n: r.dependencies for n, r in record.nodes.items()} == {
        "a": (), "b": ("a",), "c": ("a",)}
    [(_, _, a_ended)] = [s for s in slept if s[0] == 5]
    [(_, b_started, b_ended), (_, c_started, c_ended)] = [s for s in slept if s[0] == 10]
    assert a_ended <= min(b_started, c_started)
    assert b_started < c_ended and c_started < b_ended  # b and c ran at the same time
    assert sorted(capsys.readouterr().out.split("\n")) == ["", "in a!", "in b!", "in c!"]


def test_the_seeds_flow_strings_mean_what_the_seed_says() -> None:
    def fn() -> None:
        return None

    for text in ("(a; b || c)", "a; b | c"):
        graph = Workflow(text, a=fn, b=fn, c=fn).graph()
        assert {n.name: tuple(p for p in n.parents if p != "entry") for n in graph} == {
            "a": (), "b": ("a",), "c": ("a",)}


def test_a_returned_value_reaches_the_view_as_its_json_value(tmp_path: Path) -> None:
    a = run_snippet("cloudmesh_value.py")["a"]
    fetched = threading.Event()

    def after(a: Any) -> str:
        fetched.wait(30)
        return "done"

    flow = Workflow("a; after", a=a, after=after)
    run = start_flow(flow.graph(), flow.functions, inline=True, state_dir=tmp_path,
                     serve=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            url = run.status_url.rsplit("api/v1/", 1)[0] if run.status_url else None
            if url is not None:
                with urllib.request.urlopen(f"{url}api/v1/workflow") as answer:
                    nodes = {n["name"]: n for n in json.load(answer)["nodes"]}
                if nodes["a"].get("display"):
                    break
            assert time.monotonic() < deadline, "node a never showed its display"
            time.sleep(0.05)
    finally:
        fetched.set()
    record = run.wait(30)
    assert nodes["a"]["display"] == {"color": "green", "shape": "circle", "label": "c",
                                     "value": 10}
    assert record.results["a"]["value"] == 10
    assert display_of({"value": {"rows": [1, 2]}})["value"] == {"rows": [1, 2]}


def test_the_seeds_yaml_task_shape_is_read_and_run(tmp_path: Path) -> None:
    for name in ("cloudmesh_tasks.yaml", "cloudmesh_steps.py"):
        shutil.copy(SEEDS / name, tmp_path / name)
    definition = read_flow_file(tmp_path / "cloudmesh_tasks.yaml")
    assert definition.name == "cloudmesh_tasks" and dict(definition.nodes) == {"a": ()}
    record = Workflow.from_yaml(tmp_path / "cloudmesh_tasks.yaml",
                                state_dir=tmp_path / "state").run(inline=True)
    assert record.results["a"] == {"status": "done", "color": "green", "label": "a",
                                   "value": 3, "shape": "circle"}
    assert display_of(record.nodes["a"].output)["value"] == 3


def test_repeated_task_keys_make_a_flow_whose_values_pass_on(tmp_path: Path) -> None:
    for name in ("cloudmesh_two_tasks.yaml", "cloudmesh_steps.py"):
        shutil.copy(SEEDS / name, tmp_path / name)
    flow = Workflow.from_yaml(tmp_path / "cloudmesh_two_tasks.yaml",
                              state_dir=tmp_path / "state")
    record = flow.run(workers=1)
    assert record.results["a"]["value"] == 12
    assert record.results["b"] == {"status": "done", "color": "blue", "label": "b",
                                   "shape": "box", "value": {"scaled": 120}}
    assert record.nodes["b"].dependencies == ("a",)


def test_the_cli_adds_and_runs_a_yaml_file_of_the_seeds_shape(tmp_path: Path) -> None:
    for name in ("cloudmesh_two_tasks.yaml", "cloudmesh_steps.py"):
        shutil.copy(SEEDS / name, tmp_path / name)
    cli = [sys.executable, "-m", "cryoflow.cli.main", "flow"]
    subprocess.run([*cli, "add", "cloudmesh_two_tasks.yaml"], cwd=tmp_path, check=True,
                   capture_output=True)
    ran = subprocess.run([*cli, "run", "cloudmesh_two_tasks", "--inline"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "finished" in ran.stdout


@pytest.mark.parametrize(("task", "error"), [
    ({"name": "a", "calculation": "f(x)"}, "x is not a parameter"),
    ({"name": "a", "calculation": "__import__('os').system('true')"}, "call a function"),
    ({"name": "a", "calculation": "f(1 + 2)"}, "parameter names or literals"),
    ({"name": "a", "parameter": {"q": "int"}}, "parameter q has no value"),
    ({"name": "a", "parameter": {"x": "complex"}}, "type 'complex' is not one of"),
    ({"name": "a", "colour": "red"}, "unknown key 'colour'"),
    ({"name": "a", "return": {"size": 3}}, "unknown key 'size'"),
])
def test_a_bad_yaml_task_is_refused_with_what_to_change(
        tmp_path: Path, task: dict[str, Any], error: str) -> None:
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"module": "steps", "parameters": {"x": 1},
                                    "tasks": {"task": task}}))
    with pytest.raises(GraphError, match=error):
        read_flow_file(path)


def test_a_calculation_needs_to_say_where_its_function_is(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tasks:\n  task:\n    name: a\n    calculation: f()\n")
    with pytest.raises(GraphError, match="say in 'module:' where f is"):
        read_flow_file(path)


def test_the_definition_has_the_fields_of_the_seeds_collection(tmp_path: Path) -> None:
    seed = json.loads((SEEDS / "cloudmesh_definition.json").read_text())

    def pytesta() -> int:
        return 1

    flow = Workflow("pytesta", name="test", state_dir=tmp_path, pytesta=pytesta)
    flow.run(inline=True)
    [stored] = flow.definition()
    assert set(stored) == set(seed) and set(stored["cm"]) == set(seed["cm"])
    same = ("name", "dependencies", "workflow", "kind", "cloud", "status")
    assert {k: stored[k] for k in same} == {k: seed[k] for k in same}
    assert {k: stored["cm"][k] for k in ("kind", "cloud", "name", "collection")} == {
        k: seed["cm"][k] for k in ("kind", "cloud", "name", "collection")}
