"""Every malformed graph gets a sentence that says what to fix, and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryoflow.cli.workflow import main
from cryoflow.errors import GraphValidationError
from cryoflow.graph import load_graph

DATA = Path(__file__).parent / "data"
MODULES = DATA / "modules"
TABLE: list[dict[str, Any]] = yaml.safe_load((DATA / "graphs" / "bad_graphs.yaml").read_text())


def write_row(row: dict[str, Any], folder: Path) -> Path:
    path = folder / row.get("file", f"{row['id']}.json")
    path.write_text(row["text"] if "text" in row else json.dumps(row["graph"]))
    return path


def problems_of(source: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(GraphValidationError) as caught:
        load_graph(source, module_paths=[MODULES], **kwargs)
    return caught.value.problems


@pytest.mark.parametrize("row", TABLE, ids=[r["id"] for r in TABLE])
def test_bad_graph_is_refused_with_the_expected_message(
    row: dict[str, Any], tmp_path: Path
) -> None:
    path = write_row(row, tmp_path)
    problems = problems_of(path)
    assert any(row["expect"] in p for p in problems), "\n".join(problems)
    assert all(p.startswith(str(path)) for p in problems), "\n".join(problems)


@pytest.mark.parametrize("row", TABLE, ids=[r["id"] for r in TABLE])
def test_bad_graph_makes_validate_exit_2_without_a_traceback(
    row: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_row(row, tmp_path)
    assert main([str(path), "--validate", "--modules", str(MODULES)]) == 2
    err = capsys.readouterr().err
    assert row["expect"] in err
    assert "Traceback" not in err


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    graph = {
        "workflow": {
            "name": "many",
            "nodes": [
                {"name": "In", "module": "source", "priorty": 3},
                {"name": "A", "module": "work", "downstreamOf": ["Nope"]},
                {"name": "B", "module": "work", "downstreamOf": ["In"], "args": {"scr": 1}},
                {"name": "C", "module": "missing_mod", "downstreamOf": ["In"]},
            ],
        }
    }
    with pytest.raises(GraphValidationError) as caught:
        load_graph(graph, module_paths=[MODULES], lenient=True, warn=lambda line: None)
    text = "\n".join(caught.value.problems)
    assert "downstreamOf names 'Nope'" in text
    assert "arg 'scr' is not an input" in text
    assert "module 'missing_mod' was not found" in text


def test_lenient_turns_unknown_keys_into_warnings() -> None:
    graph = {"workflow": {"name": "x", "nodes": [{"name": "In", "module": "source", "volume": []}]}}
    warnings: list[str] = []
    loaded = load_graph(graph, module_paths=[MODULES], lenient=True, warn=warnings.append)
    assert list(loaded.nodes) == ["In"]
    assert warnings == ["<memory>: node 'In': unknown key 'volume' (did you mean 'volumes'?)"]


def test_an_output_reference_with_a_default_is_only_a_warning() -> None:
    graph = {
        "workflow": {
            "name": "x",
            "nodes": [
                {"name": "In", "module": "source"},
                {
                    "name": "W",
                    "module": "work",
                    "downstreamOf": ["In"],
                    "args": {"src": {"output": "parent.nothere", "default": "/tmp/x"}},
                },
            ],
        }
    }
    warnings: list[str] = []
    load_graph(graph, module_paths=[MODULES], warn=warnings.append)
    assert len(warnings) == 1
    assert "no parent has an output 'nothere'" in warnings[0]


def test_a_diamond_is_not_a_cycle() -> None:
    graph = {
        "workflow": {
            "name": "diamond",
            "nodes": [
                {"name": "In", "module": "source"},
                {"name": "L", "module": "work", "downstreamOf": ["In"]},
                {"name": "R", "module": "work", "downstreamOf": ["In"]},
                {"name": "Join", "module": "work", "downstreamOf": ["L", "R"]},
            ],
        }
    }
    assert list(load_graph(graph, module_paths=[MODULES]).nodes) == ["In", "L", "R", "Join"]


def test_two_separate_cycles_are_both_printed() -> None:
    nodes = [{"name": "In", "module": "source"}]
    nodes += [
        {"name": n, "module": "work", "downstreamOf": [p]}
        for n, p in [("A", "B"), ("B", "A"), ("C", "D"), ("D", "C")]
    ]
    problems = problems_of({"workflow": {"name": "x", "nodes": nodes}})
    assert "the graph has a cycle: A -> B -> A" in "\n".join(problems)
    assert "the graph has a cycle: C -> D -> C" in "\n".join(problems)


def test_a_long_cycle_is_found_without_recursion() -> None:
    count = 5000
    nodes = [{"name": "In", "module": "source"}]
    nodes += [
        {"name": f"n{i}", "module": "work", "downstreamOf": [f"n{(i - 1) % count}"]}
        for i in range(count)
    ]
    problems = problems_of({"workflow": {"name": "x", "nodes": nodes}})
    cycle = next(p for p in problems if "cycle" in p)
    assert cycle.count("->") == count


def test_nested_splits_merged_in_order_are_accepted() -> None:
    graph = {
        "workflow": {
            "name": "nested",
            "nodes": [
                {"name": "In", "module": "source"},
                {
                    "name": "Outer",
                    "module": "work",
                    "downstreamOf": ["In"],
                    "splitOn": "items",
                    "args": {"items": [[1, 2], [3]]},
                },
                {
                    "name": "Inner",
                    "module": "work",
                    "downstreamOf": ["Outer"],
                    "splitOn": "items",
                    "args": {"items": {"output": "parent.result"}},
                },
                {"name": "InnerJoin", "module": "work", "downstreamOf": ["Inner"], "merge": True},
                {
                    "name": "OuterJoin",
                    "module": "work",
                    "downstreamOf": ["InnerJoin"],
                    "merge": True,
                },
            ],
        }
    }
    loaded = load_graph(graph, module_paths=[MODULES])
    assert loaded.node("OuterJoin").merge
