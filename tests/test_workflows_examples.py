"""Every example graph validates, and together they use every key of the format."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cryoflow.cli.workflow import main
from cryoflow.graph import load_graph, read_graph_file
from cryoflow.graph.modules import builtin_modules_dir
from cryoflow.graph.schema import known_keys

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(
    p for p in (ROOT / "workflows").iterdir() if p.suffix in (".json", ".yaml", ".yml")
)
LEGACY = sorted((ROOT / "tests" / "data" / "graphs" / "legacy").iterdir())
FIXTURE_MODULES = ROOT / "tests" / "data" / "modules"


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.mark.parametrize("path", EXAMPLES, ids=ids(EXAMPLES))
def test_example_graph_validates(path: Path) -> None:
    warnings: list[str] = []
    graph = load_graph(path, warn=warnings.append)
    assert len(graph) > 0
    assert warnings == []


@pytest.mark.parametrize("path", EXAMPLES, ids=ids(EXAMPLES))
def test_example_graph_passes_ccworkflow_validate(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(path), "--validate"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok (")


@pytest.mark.parametrize("path", LEGACY, ids=ids(LEGACY))
def test_legacy_shapes_in_test_data_validate(path: Path) -> None:
    assert len(load_graph(path, module_paths=[FIXTURE_MODULES], warn=lambda line: None)) > 0


def test_the_demo_runs_on_built_in_modules_only() -> None:
    graph = load_graph(ROOT / "workflows" / "demo.json")
    folder = str(builtin_modules_dir())
    assert all((node.module_ref or "").startswith(folder) for node in graph)
    assert graph.options["items"].type == "int" and graph.options["items"].default == 5
    assert any(node.split_on for node in graph) and any(node.merge for node in graph)
    assert [n.name for n in graph.input_nodes] == ["Start"]


# every key of the format is used by some example


def used_keys() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path in EXAMPLES:
        data = read_graph_file(path)
        used.setdefault("root", set()).update(data)
        workflow = data["workflow"]
        used.setdefault("workflow", set()).update(workflow)
        for option in workflow.get("options", {}).values():
            used.setdefault("option", set()).update(option)
        for node in walk_nodes(workflow["nodes"]):
            collect_node(node, used)
    return used


def walk_nodes(nodes: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for node in nodes:
        yield node
        yield from walk_nodes(node.get("children", []))


def collect_node(node: Mapping[str, Any], used: dict[str, set[str]]) -> None:
    used.setdefault("node", set()).update(node)
    specs = [v for v in node.get("args", {}).values() if isinstance(v, dict)]
    specs += [v for key in ("ccnode", "workdir", "dir") if isinstance(v := node.get(key), dict)]
    for post in node.get("post", []):
        used.setdefault("post", set()).update(post)
        if isinstance(post["target"], dict):
            specs.append(post["target"])
    for spec in specs:
        used.setdefault("argSpec", set()).update(spec)
    if "cache" in node:
        used.setdefault("cache", set()).update(node["cache"])


@pytest.mark.parametrize("definition", ["node", "argSpec", "post", "cache", "option", "workflow"])
def test_the_examples_together_use_every_key(definition: str) -> None:
    missing = known_keys(definition) - used_keys().get(definition, set())
    assert missing == set(), f"no example uses {sorted(missing)} of {definition}"


def test_the_examples_use_every_arg_type_and_option_type() -> None:
    arg_types, option_types = set(), set()
    for path in EXAMPLES:
        workflow = read_graph_file(path)["workflow"]
        option_types |= {o.get("type") for o in workflow.get("options", {}).values()}
        for node in walk_nodes(workflow["nodes"]):
            values = [*node.get("args", {}).values(), node.get("dir"), node.get("workdir")]
            arg_types |= {v.get("type") for v in values if isinstance(v, dict)}
    assert {"file", "dir", "tempdir"} <= arg_types
    assert {"bool", "int", "list", "json", "str"} <= option_types
