"""``ccworkflow``: --validate, --explain, --dot, --schema, GRAPH --help and the run path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cryoflow.cli.workflow import main
from cryoflow.daemon.settings import RunSettings
from cryoflow.graph import Graph

DATA = Path(__file__).parent / "data"
MODULES = DATA / "modules"
SCHEMA = Path(__file__).resolve().parents[1] / "cryoflow" / "graph" / "schema.json"

GRAPH = {
    "workflow": {
        "name": "cli",
        "description": "A graph for command-line tests",
        "options": {
            "items": {"default": 5, "help": "How many items"},
            "force": {"type": "bool", "help": "Run even when not needed"},
            "target": {"type": "str", "required": True, "help": "Where results go"},
        },
        "nodes": [
            {"name": "In", "module": "source", "args": {"items": [1, 2]}},
            {
                "name": "W",
                "module": "work",
                "downstreamOf": ["In"],
                "splitOn": "items",
                "args": {"items": {"output": "parent.item"}, "time": {"option": "items"}},
            },
            {
                "name": "M",
                "module": "work",
                "downstreamOf": ["W"],
                "merge": True,
                "type": "admin",
                "runIf": "option:force",
            },
        ],
    }
}


@pytest.fixture
def graph_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli.json"
    path.write_text(json.dumps(GRAPH))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schema_prints_the_shipped_schema_without_a_graph(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--schema")
    assert code == 0
    assert json.loads(out) == json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(json.loads(out))


def test_validate_says_ok_and_exits_0(capsys: pytest.CaptureFixture[str], graph_file: Path) -> None:
    code, out, err = run(capsys, str(graph_file), "--validate", "--modules", str(MODULES))
    assert (code, err) == (0, "")
    assert out == f"{graph_file}: ok (3 nodes, 1 input, 3 options)\n"


def test_modules_may_come_from_cryoflow_modules(
    capsys: pytest.CaptureFixture[str], graph_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRYOFLOW_MODULES", os.pathsep.join(["/nonexistent", str(MODULES)]))
    assert run(capsys, str(graph_file), "--validate")[0] == 0


def test_explain_prints_nodes_edges_options_and_worker_classes(
    capsys: pytest.CaptureFixture[str], graph_file: Path
) -> None:
    code, out, _ = run(capsys, str(graph_file), "--explain", "--modules", str(MODULES))
    assert code == 0
    assert "workflow 'cli' from" in out and "A graph for command-line tests" in out
    assert "--items  int, default 5  How many items" in out
    assert "--target  str, required  Where results go" in out
    assert "  W: node, module work" in out and "splitOn items" in out
    assert "arg time = option items" in out and "arg items = output parent.item" in out
    assert "runIf option:force" in out and "merge" in out
    assert "  entry -> In\n  In -> W\n  W -> M\n" in out
    assert "  admin: M\n  normal: W\n" in out


def test_explain_prints_the_grouping_of_a_flow_string(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "a; b || c", "--explain")
    assert code == 0
    assert "flow grouping: a ; (b || c)" in out
    assert "  a -> b\n  a -> c\n" in out


def test_dot_prints_a_graphviz_digraph(
    capsys: pytest.CaptureFixture[str], graph_file: Path
) -> None:
    code, out, _ = run(capsys, str(graph_file), "--dot", "--modules", str(MODULES))
    assert code == 0
    assert out.startswith('digraph "cli" {\n')
    assert '  "In" [label="In\\nsource", shape=ellipse];' in out
    assert '  "W" -> "M";' in out and out.endswith("}\n")


def test_graph_help_lists_the_graphs_own_options(
    capsys: pytest.CaptureFixture[str], graph_file: Path
) -> None:
    code, out, _ = run(capsys, str(graph_file), "--help", "--modules", str(MODULES))
    assert code == 0
    assert "options of workflow 'cli'" in out
    assert "How many items (int, default: 5)" in out
    assert "--force, --no-force" in out and "Where results go (str, required)" in out


def test_help_of_a_broken_graph_shows_the_help_and_the_problems(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{")
    code, out, err = run(capsys, str(path), "--help")
    assert code == 2
    assert "usage: ccworkflow" in out and "invalid JSON at line 1" in err


def test_help_without_a_graph_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "--validate" in out


def test_no_graph_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--validate")
    assert code == 2 and "give a graph file" in err


def test_lenient_lets_an_old_file_with_unknown_keys_validate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = json.loads(json.dumps(GRAPH))
    data["workflow"]["nodes"][0]["colour"] = "blue"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    assert run(capsys, str(path), "--validate", "--modules", str(MODULES))[0] == 2
    code, _, err = run(capsys, str(path), "--validate", "--lenient", "--modules", str(MODULES))
    assert code == 0
    assert "warning: " in err and "unknown key 'colour'" in err


# the run path


class FakeRunner:
    def __init__(self, code: int = 0) -> None:
        self.code = code
        self.calls: list[tuple[Graph, dict[str, Any], RunSettings]] = []

    def run_workflow(self, graph: Graph, options: dict[str, Any], settings: RunSettings) -> int:
        self.calls.append((graph, options, settings))
        return self.code


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    fake = FakeRunner(code=7)
    module = types.ModuleType("cryoflow.cli.run")
    module.run_workflow = fake.run_workflow  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cryoflow.cli.run", module)
    return fake


def test_running_passes_typed_options_and_settings_and_returns_the_runs_exit_code(
    capsys: pytest.CaptureFixture[str], graph_file: Path, runner: FakeRunner, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[Root]\nkey = "value"\n')
    argv = [
        str(graph_file),
        "--modules",
        str(MODULES),
        "--items",
        "9",
        "--force",
        "--target",
        "/out",
        "--state",
        str(tmp_path / "state"),
        "--fresh",
        "--workers",
        "3",
        "--admin-workers",
        "2",
        "--gpus",
        "0",
        "--config",
        str(config),
        "--report",
        str(tmp_path / "r.json"),
        "--loglevel",
        "debug",
        "--http",
        "0.0.0.0:8080",
        "--executor",
        "dask",
        "--scheduler",
        "tcp://127.0.0.1:8786",
        "--kubernetes",
        "--nocache",
    ]
    assert run(capsys, *argv)[0] == 7
    graph, options, settings = runner.calls[0]
    assert graph.name == "cli"
    assert options == {"items": 9, "force": True, "target": "/out"}
    assert settings == RunSettings(
        state_dir=tmp_path / "state",
        fresh=True,
        module_paths=(MODULES,),
        workers=3,
        admin_workers=2,
        gpus=0,
        config={"Root": {"key": "value"}},
        report_path=tmp_path / "r.json",
        loglevel="DEBUG",
        http="0.0.0.0:8080",
        executor="dask",
        scheduler="tcp://127.0.0.1:8786",
        kubernetes=True,
        nocache=True,
    )


def test_running_with_defaults_gives_default_settings(
    capsys: pytest.CaptureFixture[str], graph_file: Path, runner: FakeRunner
) -> None:
    assert run(capsys, str(graph_file), "--modules", str(MODULES), "--target", "t")[0] == 7
    _, options, settings = runner.calls[0]
    assert options == {"items": 5, "force": None, "target": "t"}
    assert settings == RunSettings(module_paths=(MODULES,))


def test_no_http_turns_the_http_service_off(
    capsys: pytest.CaptureFixture[str], graph_file: Path, runner: FakeRunner
) -> None:
    run(capsys, str(graph_file), "--modules", str(MODULES), "--target", "t", "--no-http")
    assert runner.calls[0][2].http is None


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_files_may_be_yaml_or_json(
    capsys: pytest.CaptureFixture[str],
    graph_file: Path,
    runner: FakeRunner,
    tmp_path: Path,
    suffix: str,
) -> None:
    config = tmp_path / f"c{suffix}"
    config.write_text('{"A": {"b": 1}}')
    run(
        capsys, str(graph_file), "--modules", str(MODULES), "--target", "t", "--config", str(config)
    )
    assert runner.calls[0][2].config == {"A": {"b": 1}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--items", "lots"], "option --items: 'lots' is not an int"),
        ([], "option --target is required"),
        (
            ["--target", "t", "--config", "/no/such.toml"],
            "config file /no/such.toml cannot be read",
        ),
        (["--target", "t", "--config", "{bad}.ini"], "use a .toml, .yaml, .yml or .json file"),
        (["--target", "t", "--workers", "-1"], "argument --workers: -1 is negative"),
        (["--target", "t", "--http", "localhost"], "'localhost' is not HOST:PORT"),
        (["--target", "t", "--executor", "spark"], "invalid choice: 'spark'"),
        (["--target", "t", "--unknown-flag"], "unrecognized arguments: --unknown-flag"),
    ],
)
def test_bad_run_input_exits_2_before_running(
    capsys: pytest.CaptureFixture[str],
    graph_file: Path,
    runner: FakeRunner,
    extra: list[str],
    message: str,
) -> None:
    code, _, err = run(capsys, str(graph_file), "--modules", str(MODULES), *extra)
    assert code == 2
    assert message in err
    assert runner.calls == []


def test_a_config_file_that_is_not_a_table_is_refused(
    capsys: pytest.CaptureFixture[str], graph_file: Path, runner: FakeRunner, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("- just\n- a list\n")
    code, _, err = run(
        capsys, str(graph_file), "--modules", str(MODULES), "--target", "t", "--config", str(config)
    )
    assert code == 2 and "must hold a table of keys, not list" in err


def test_the_command_runs_as_a_process_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"workflow": {"name": "x", "nodes": [{"name": "In", "module": "nope"}]}}')
    done = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.workflow", str(path), "--validate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "module 'nope' was not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_graphs_config_is_the_base_of_the_config_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, runner: FakeRunner
) -> None:
    data = json.loads(json.dumps(GRAPH))
    data["workflow"]["config"] = {"A": {"keep": 1, "swap": 2}, "B": 3}
    graph_path = tmp_path / "g.json"
    graph_path.write_text(json.dumps(data))
    config = tmp_path / "c.json"
    config.write_text('{"A": {"swap": 20, "new": 30}}')
    run(
        capsys, str(graph_path), "--modules", str(MODULES), "--target", "t", "--config", str(config)
    )
    assert runner.calls[0][2].config == {"A": {"keep": 1, "swap": 20, "new": 30}, "B": 3}
