"""Workflow options become typed command-line flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from cryoflow.errors import OptionError
from cryoflow.graph import Graph, Node, OptionSpec
from cryoflow.graph.options import (
    RESERVED_FLAGS,
    add_option_flags,
    build_option,
    option_problems,
    option_values,
)


def graph_with(**options: dict[str, Any]) -> Graph:
    specs = {}
    for name, raw in options.items():
        spec, problems = build_option(name, raw)
        assert problems == []
        specs[name] = spec
    return Graph(name="opts", nodes={"In": Node("In", "source")}, options=specs)


def values(graph: Graph, *argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_option_flags(parser, graph)
    return option_values(graph, parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ({"default": 10}, "int"),
        ({"default": 1.5}, "float"),
        ({"default": False}, "bool"),
        ({"default": ["a"]}, "list"),
        ({"default": {"a": 1}}, "json"),
        ({"default": "x"}, "str"),
        ({}, "str"),
        ({"default": "10", "type": "int"}, "int"),
    ],
)
def test_an_option_without_type_takes_the_type_of_its_default(
    raw: dict[str, Any], kind: str
) -> None:
    spec, _ = build_option("x", raw)
    assert spec.type == kind


def test_a_typed_default_written_as_text_is_converted() -> None:
    assert build_option("n", {"type": "int", "default": "10"})[0].default == 10
    assert build_option("b", {"type": "bool", "default": "false"})[0].default is False
    assert build_option("b", {"type": "bool", "default": "true"})[0].default is True
    assert build_option("l", {"type": "list", "default": "a, b"})[0].default == ["a", "b"]
    assert build_option("f", {"type": "float", "default": 2})[0].default == 2.0


def test_a_default_that_does_not_fit_the_type_is_a_problem() -> None:
    _, problems = build_option("n", {"type": "int", "default": True})
    assert problems == ["option 'n': default True is not valid: expected int, got a boolean"]


def test_values_are_typed_and_defaults_fill_the_rest() -> None:
    graph = graph_with(
        count={"default": 5},
        ratio={"type": "float"},
        names={"type": "list"},
        data={"type": "json"},
        label={"default": "hi"},
    )
    got = values(
        graph, "--count", "7", "--ratio", "0.5", "--names", "a, b,,c", "--data", '{"k": [1]}'
    )
    assert got == {
        "count": 7,
        "ratio": 0.5,
        "names": ["a", "b", "c"],
        "data": {"k": [1]},
        "label": "hi",
    }


def test_a_json_option_may_name_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"from": "file"}))
    assert values(graph_with(data={"type": "json"}), "--data", str(path)) == {
        "data": {"from": "file"}
    }


def test_a_bool_option_is_a_flag_with_a_negative_form() -> None:
    graph = graph_with(force={"type": "bool"}, keep={"default": True})
    assert values(graph) == {"force": None, "keep": True}
    assert values(graph, "--force", "--no-keep") == {"force": True, "keep": False}


def test_an_option_without_default_is_none_when_not_given() -> None:
    assert values(graph_with(name={"help": "a name"})) == {"name": None}


def test_a_required_option_must_be_given() -> None:
    graph = graph_with(target={"required": True, "help": "Where to put results"})
    with pytest.raises(OptionError, match="option --target is required: Where to put results"):
        values(graph)


def test_a_file_option_must_exist(tmp_path: Path) -> None:
    graph = graph_with(src={"type": "file"})
    assert values(graph, "--src", str(tmp_path)) == {"src": str(tmp_path)}
    with pytest.raises(OptionError, match="option --src: file '/no/such/file' does not exist"):
        values(graph, "--src", "/no/such/file")


@pytest.mark.parametrize(
    ("raw", "given", "message"),
    [
        ({"default": 1}, "many", "option --n: 'many' is not an int"),
        ({"default": 1.0}, "x", "option --n: 'x' is not a float"),
        ({"type": "json"}, "{bad", "option --n: '{bad' is neither JSON"),
    ],
)
def test_a_bad_value_names_the_option(raw: dict[str, Any], given: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        values(graph_with(n=raw), "--n", given)


def test_dashes_and_underscores_name_the_same_option() -> None:
    graph = graph_with(max_items={"default": 1})
    assert values(graph, "--max-items", "3")["max_items"] == 3
    assert values(graph, "--max_items", "4") == {"max_items": 4, "max-items": 4}


def test_help_lists_each_option_with_its_help_type_and_default() -> None:
    parser = argparse.ArgumentParser(prog="x")
    add_option_flags(parser, graph_with(items={"default": 5, "help": "How many items."}))
    text = parser.format_help()
    assert "options of workflow 'opts'" in text
    assert "--items INT" in text and "How many items (int, default: 5)" in text


def test_option_names_may_not_reuse_cryocloud_ccworkflow_flags() -> None:
    specs = {"node": OptionSpec("node"), "debug": OptionSpec("debug", type="bool"),
             "state": OptionSpec("state"), "schema": OptionSpec("schema")}
    assert option_problems(specs) == [
        "option 'node' clashes with ccworkflow's own flag --node; rename it",
        "option 'debug' clashes with ccworkflow's own flag --debug; rename it",
    ]


def test_a_bool_options_negative_form_may_not_clash_with_another_option() -> None:
    specs = {"cache": OptionSpec("cache", type="bool"), "no_cache": OptionSpec("no_cache")}
    assert option_problems(specs) == [
        "option 'no_cache' clashes with option 'cache' (--no-cache); dashes and underscores "
        "are the same; rename one"
    ]


def test_the_reserved_flags_are_those_cryoflow_shares_with_cryocloud_and_no_others() -> None:
    from cryoflow.cli.workflow import build_parser

    flags = {s.lstrip("-") for action in build_parser()._actions for s in action.option_strings}
    assert {"help", "h", "version", "kubernetes", "loglevel", "nocache"} <= RESERVED_FLAGS
    assert flags - RESERVED_FLAGS >= {"schema", "state", "workers", "validate"}
    assert "schema" not in RESERVED_FLAGS


@pytest.mark.parametrize("name", ["", "-x", "two words", "x=1", "9lives"])
def test_an_option_name_must_be_a_plain_word(name: str) -> None:
    assert option_problems({name: OptionSpec(name)}) == [
        f"option {name!r}: a name starts with a letter and holds only letters, digits, '-' and '_'"
    ]
