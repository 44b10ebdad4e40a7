"""Random input never makes the loader raise anything but a graph error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryoflow.errors import GraphError
from cryoflow.graph import load_graph
from cryoflow.graph.schema import graph_checker, graph_schema, known_keys

MODULES = Path(__file__).parent / "data" / "modules"
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)

NODE_KEYS = sorted(known_keys("node"))
ARG_KEYS = sorted(known_keys("argSpec"))
names = st.sampled_from(["In", "A", "B", "C", "entry", "parent", "a.b", ""]) | st.text(max_size=6)
modules = st.sampled_from(
    [
        "source",
        "work",
        "report",
        "anything",
        "watcher",
        "broken",
        "os",
        "this.x",
        "../x",
        "cfx_nope",
    ]
)
refs = st.builds(lambda n, k: f"{n}.{k}", names, st.sampled_from(["fullpath", "dst", "node", "x"]))
arg_specs = st.dictionaries(
    st.sampled_from(ARG_KEYS), st.one_of(refs, scalars, json_values), max_size=3
)
field_values: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "module": modules,
    "downstreamOf": st.lists(names, max_size=3) | names,
    "args": st.dictionaries(
        st.sampled_from(["src", "dst", "time", "items", "x"]), arg_specs | scalars, max_size=3
    ),
    "runIf": st.sampled_from(["option:x", "output:A.b == 1", "((", "option:", "not"])
    | st.text(max_size=10),
    "restrictions": st.dictionaries(st.text(max_size=8), st.text(max_size=5), max_size=2),
    "splitOn": st.sampled_from(["items", "src", "nope"]),
    "merge": st.booleans() | st.sampled_from(["true", "maybe"]),
}


def node_value(key: str) -> st.SearchStrategy[Any]:
    return field_values.get(key, json_values)


nodes = st.lists(st.sampled_from(NODE_KEYS), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: node_value(k) for k in keys})
)
graphs = st.fixed_dictionaries(
    {
        "workflow": st.fixed_dictionaries(
            {"name": names, "nodes": st.lists(nodes, max_size=4)},
            optional={
                "options": st.dictionaries(
                    st.sampled_from(["x", "workers", "a-b", "a_b"]),
                    st.dictionaries(
                        st.sampled_from(["default", "type", "help", "required"]),
                        scalars,
                        max_size=3,
                    ),
                    max_size=2,
                ),
                "config": json_values,
                "modules": st.lists(nodes, max_size=2),
            },
        )
    },
    optional={"options": json_values, "$schema": scalars},
)
specs = st.lists(
    st.fixed_dictionaries(
        {"nodename": names, "funcname": st.text(max_size=4)},
        optional={
            "conditions": st.fixed_dictionaries(
                {}, optional={"dependencies": st.lists(names, max_size=2) | json_values}
            ),
            "maxexectime": scalars,
            "kwargs": json_values,
        },
    ),
    max_size=4,
)


def load_quietly(source: Any) -> None:
    try:
        load_graph(source, module_paths=[MODULES], warn=lambda line: None)
    except GraphError:
        pass


@FUZZ
@given(json_values)
def test_random_json_values_only_raise_graph_errors(data: Any) -> None:
    load_quietly(data)


@FUZZ
@given(graphs)
def test_random_graph_shaped_data_only_raises_graph_errors(data: Any) -> None:
    load_quietly(data)


@FUZZ
@given(specs | st.fixed_dictionaries({"functionspecs": specs}))
def test_random_function_specs_only_raise_graph_errors(data: Any) -> None:
    load_quietly(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab_ ;|()\t1", max_size=20))
def test_random_flow_strings_only_raise_graph_errors(text: str) -> None:
    if ";" in text or "|" in text:
        load_quietly(text)


VALIDATOR = jsonschema.Draft202012Validator(graph_schema())


@settings(FUZZ, max_examples=300)
@given(graphs)
def test_the_fast_checker_agrees_with_a_full_json_schema_validator(data: Any) -> None:
    data = json.loads(json.dumps(data))
    assert (graph_checker().problems(data) == []) == VALIDATOR.is_valid(data)
