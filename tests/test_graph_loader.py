"""Every notation loads into the same immutable graph model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryoflow.errors import GraphError, GraphValidationError
from cryoflow.graph import (
    ENTRY,
    ArgSource,
    ArgSpec,
    Graph,
    RunOn,
    WorkerClass,
    load_graph,
)

DATA = Path(__file__).parent / "data"
MODULES = DATA / "modules"
GRAPHS = DATA / "graphs"


def load(source: Any, **kwargs: Any) -> Graph:
    kwargs.setdefault("warn", lambda line: None)
    return load_graph(source, module_paths=[MODULES], **kwargs)


def workflow(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"workflow": {"name": "test", **extra, "nodes": list(nodes)}}


IN = {"name": "In", "module": "source"}


def test_nodes_come_out_in_topological_order_whatever_the_file_order() -> None:
    graph = load(
        workflow(
            {"name": "Last", "module": "work", "downstreamOf": ["Middle"]},
            {"name": "Middle", "module": "work", "downstreamOf": ["In"]},
            IN,
        )
    )
    assert list(graph.nodes) == ["In", "Middle", "Last"]
    assert graph.children_of(ENTRY) == ("In",)
    assert graph.edges == (("entry", "In"), ("In", "Middle"), ("Middle", "Last"))


def test_yaml_and_json_files_load_to_the_same_model(tmp_path: Path) -> None:
    data = yaml.safe_load((GRAPHS / "legacy" / "nested_children.yaml").read_text())
    (tmp_path / "g.json").write_text(json.dumps(data))
    (tmp_path / "g.yml").write_text(yaml.safe_dump(data))
    from_json, from_yaml = load(tmp_path / "g.json"), load(str(tmp_path / "g.yml"))
    assert from_json.nodes == from_yaml.nodes
    assert from_json.source.endswith("g.json")


def test_legacy_files_load_with_a_deprecation_warning() -> None:
    warnings: list[str] = []
    graph = load(GRAPHS / "legacy" / "cryocloud_legacy.json", warn=warnings.append)
    assert list(graph.nodes) == ["Start", "Crunch", "anything-3"]
    assert graph.options["slow"].type == "bool" and graph.options["slow"].default is False
    assert graph.node("Crunch").run_if_text == "option:slow == 'True'"
    assert any("move the root-level 'options' into 'workflow'" in w for w in warnings)
    assert any("rename 'modules' to 'nodes'" in w for w in warnings)


def test_inline_children_are_downstream_of_their_container_at_every_depth() -> None:
    graph = load(GRAPHS / "legacy" / "nested_children.yaml")
    assert graph.node("Unpack").parents == ("Watch",)
    assert graph.node("Process").parents == ("Unpack",)
    assert graph.node("report-4").parents == ("Process",)
    assert graph.node("anything-5").parents == ("Unpack",)
    assert graph.node("Unpack").args["src"].flags == {"unzip": True}


def test_a_child_keeps_its_own_parents_and_adds_its_container() -> None:
    graph = load(
        workflow(
            IN,
            {"name": "A", "module": "work", "downstreamOf": ["In"]},
            {
                "name": "B",
                "module": "work",
                "downstreamOf": ["In"],
                "children": [{"name": "C", "module": "work", "downstreamOf": ["A"]}],
            },
        )
    )
    assert graph.node("C").parents == ("A", "B")


def test_unnamed_nodes_are_named_after_their_module_and_position() -> None:
    graph = load(
        workflow(
            IN,
            {"module": "work", "downstreamOf": ["In"]},
            {"name": "work-3", "module": "work", "downstreamOf": ["In"]},
            {"module": "work", "downstreamOf": ["In"]},
        )
    )
    assert list(graph.nodes) == ["In", "work-2", "work-3", "work-4"]


def test_an_unnamed_node_never_takes_a_name_given_elsewhere() -> None:
    graph = load(
        workflow(
            IN,
            {"module": "work", "downstreamOf": ["In"]},
            {"name": "work-2", "module": "work", "downstreamOf": ["In"]},
        )
    )
    assert set(graph.nodes) == {"In", "work-2-1", "work-2"}


def test_module_defaults_sit_under_the_nodes_own_keys() -> None:
    graph = load(
        workflow(
            IN,
            {"name": "A", "module": "work", "downstreamOf": ["In"]},
            {"name": "B", "module": "work", "downstreamOf": ["In"], "priority": 90},
        )
    )
    assert (graph.node("A").priority, graph.node("A").run_on) == (40, RunOn.SUCCESS)
    assert (graph.node("B").priority, graph.node("B").run_on) == (90, RunOn.SUCCESS)
    assert graph.node("In").priority == 50 and graph.node("In").run_on is RunOn.ALWAYS


def test_a_bad_module_default_is_dropped_with_a_warning() -> None:
    warnings: list[str] = []
    graph = load(
        workflow(
            IN,
            {"name": "W", "module": "work", "downstreamOf": ["In"]},
            {"name": "R", "module": "report", "downstreamOf": ["W"]},
        ),
        warn=warnings.append,
    )
    assert graph.node("R").priority == 50
    assert graph.node("R").worker_class is WorkerClass.ADMIN
    assert warnings == [
        f"<memory>: module 'report' ({MODULES.resolve() / 'report.py'}): "
        "default 'priority' ignored: 'high' is not of type 'integer'"
    ]


def test_arg_specs_keep_source_reference_default_type_and_flags() -> None:
    args = {
        "items": [1, 2],
        "time": {"option": "delay"},
        "configFile": {"config": "ConfigFile", "default": "x.cfg"},
        "src": {"output": "parent.fullpath", "type": "file", "unzip": "true", "copy": False},
        "program": {"stat": "In.node"},
        "dst": {"type": "tempdir", "id": "scratch"},
    }
    graph = load(
        workflow(
            IN,
            {"name": "W", "module": "work", "downstreamOf": ["In"], "config": "A.B", "args": args},
            options={"delay": {"default": 2}},
        )
    )
    got = graph.node("W").args
    assert got["items"] == ArgSpec(ArgSource.LITERAL, value=[1, 2])
    assert got["time"] == ArgSpec(ArgSource.OPTION, ref="delay")
    assert got["configFile"] == ArgSpec(
        ArgSource.CONFIG, ref="ConfigFile", has_default=True, default="x.cfg"
    )
    assert got["src"].source is ArgSource.OUTPUT and got["src"].type == "file"
    assert dict(got["src"].flags) == {"unzip": True, "copy": False}
    assert (got["src"].ref_node, got["src"].ref_key) == ("parent", "fullpath")
    assert got["program"] == ArgSpec(ArgSource.STAT, ref="In.node")
    assert got["dst"].source is ArgSource.DEFAULT and not got["dst"].has_default
    assert got["dst"].type == "tempdir" and got["dst"].flags == {"id": "scratch"}


def test_an_arg_with_only_a_default_is_that_default() -> None:
    graph = load(
        workflow(
            IN,
            {
                "name": "W",
                "module": "anything",
                "downstreamOf": ["In"],
                "args": {"table": {"default": {"rows": 3}}},
            },
        )
    )
    spec = graph.node("W").args["table"]
    assert (spec.source, spec.has_default, spec.default) == (ArgSource.DEFAULT, True, {"rows": 3})


def test_option_references_accept_dashes_for_underscores() -> None:
    graph = load(
        workflow(
            IN,
            {
                "name": "W",
                "module": "work",
                "downstreamOf": ["In"],
                "args": {"time": {"option": "max-delay"}},
            },
            options={"max_delay": {"default": 1.5}},
        )
    )
    assert graph.node("W").args["time"].ref == "max_delay"
    assert graph.options["max_delay"].type == "float"


@pytest.mark.parametrize("value", [True, "true", "True"])
def test_resolve_on_any_accepts_true_and_the_string_true(value: Any) -> None:
    graph = load(
        workflow(IN, {"name": "W", "module": "work", "downstreamOf": ["In"], "resolveOnAny": value})
    )
    assert graph.node("W").resolve_on_any is True


def test_dir_is_an_alias_of_workdir() -> None:
    graph = load(workflow(IN, {"name": "W", "module": "work", "downstreamOf": ["In"], "dir": "/w"}))
    assert graph.node("W").workdir == ArgSpec(ArgSource.LITERAL, value="/w")


def test_every_node_key_reaches_the_model() -> None:
    node = {
        "name": "W",
        "module": "work",
        "downstreamOf": ["In"],
        "runOn": "error",
        "runIf": "option:go",
        "priority": 70,
        "type": "admin",
        "max_parallel": 2,
        "restrictions": {"In:pending": "<3"},
        "timeout": 9.5,
        "retries": 2,
        "retryDelay": 1,
        "ccnode": {"stat": "parent.node"},
        "deferred": True,
        "global": True,
        "splitOn": "items",
        "loop": "src",
        "merge": "true",
        "post": [{"output": "dst", "target": {"option": "go"}, "basename": False}],
        "docker": "img:1",
        "image": "img:2",
        "volumes": [["/a", "/b"], ["/c", "/d", "ro"]],
        "replicas": 3,
        "workdir": "/w",
        "config": "Root.Path",
        "provides": ["X"],
        "depends": [],
        "outputs": {"dst": "Output"},
        "cache": {"args": ["src"], "expires": 60},
        "runOnHead": True,
        "args": {"items": [1], "src": "/x"},
    }
    graph = load(workflow(IN, node, options={"go": {"type": "bool"}}))
    got = graph.node("W")
    assert (got.run_on, got.run_if_text, got.priority) == (RunOn.ERROR, "option:go", 70)
    assert got.run_if is not None and {str(r) for r in got.run_if.refs} == {"option:go"}
    assert (got.worker_class, got.max_parallel, got.timeout_s) == (WorkerClass.ADMIN, 2, 9.5)
    assert got.restrictions[0].channel == "In" and got.restrictions[0].value == 3
    assert (got.retries, got.retry_delay_s) == (2, 1.0)
    assert got.ccnode == ArgSpec(ArgSource.STAT, ref="parent.node")
    assert got.deferred and got.is_global and got.merge and got.run_on_head
    assert (got.split_on, got.loop) == ("items", "src")
    assert got.post[0].output == "dst" and got.post[0].basename is False
    assert got.post[0].target == ArgSpec(ArgSource.OPTION, ref="go")
    assert (got.docker, got.image, got.replicas) == ("img:1", "img:2", 3)
    assert got.volumes == (("/a", "/b", "rw"), ("/c", "/d", "ro"))
    assert got.workdir == ArgSpec(ArgSource.LITERAL, value="/w")
    assert (got.config_root, got.provides, got.depends) == ("Root.Path", ("X",), ())
    assert dict(got.outputs) == {"dst": "Output"}
    assert got.cache is not None and got.cache.args == ("src",) and got.cache.expires_s == 60
    assert not got.is_input


def test_a_service_node_needs_no_module() -> None:
    graph = load(
        workflow(
            IN, {"name": "Remote", "downstreamOf": ["In"], "serviceURL": "http://127.0.0.1:8080/"}
        )
    )
    node = graph.node("Remote")
    assert (node.service_url, node.module, node.module_ref) == (
        "http://127.0.0.1:8080/",
        "service",
        None,
    )


def test_gpu_nodes_need_a_gpu_worker() -> None:
    graph = load(workflow(IN, {"name": "W", "module": "work", "downstreamOf": ["In"], "gpu": True}))
    assert graph.node("W").needs is WorkerClass.GPU


def test_input_nodes_are_the_direct_non_global_children_of_entry() -> None:
    graph = load(
        workflow(
            IN,
            {"name": "Watch", "module": "watcher", "downstreamOf": "entry"},
            {"name": "G", "module": "anything", "global": True, "runOn": "error"},
            {"name": "W", "module": "work", "downstreamOf": ["In", "Watch"]},
        )
    )
    assert [n.name for n in graph.input_nodes] == ["In", "Watch"]


def test_module_ref_is_the_absolute_path_of_the_module_file() -> None:
    graph = load(workflow(IN))
    assert graph.node("In").module_ref == str((MODULES / "source.py").resolve())


def test_the_graph_cannot_be_changed() -> None:
    graph = load(workflow(IN))
    with pytest.raises(TypeError):
        graph.nodes["x"] = graph.node("In")  # type: ignore[index]
    with pytest.raises(AttributeError):
        graph.node("In").priority = 1  # type: ignore[misc]


def test_a_schema_key_is_allowed_and_ignored() -> None:
    graph = load({"$schema": "./schema.json", **workflow(IN)})
    assert list(graph.nodes) == ["In"]


def test_workflow_config_and_description_are_kept() -> None:
    graph = load(workflow(IN, description="d", config={"A": {"b": 1}}))
    assert graph.description == "d" and graph.config == {"A": {"b": 1}}


# function specs


SPECS = [
    {
        "nodename": "gen",
        "funcname": "gen",
        "args": [1],
        "kwargs": {"n": 5},
        "priority": 5,
        "maxexectime": 30,
        "maxretries": 3,
        "conditions": {"executortype": "py", "dependencies": []},
    },
    {
        "nodename": "total",
        "funcname": "sum",
        "maxexectime": -1,
        "conditions": {"executortype": "py", "dependencies": ["gen"]},
    },
]


def test_a_list_of_function_specs_becomes_a_graph() -> None:
    graph = load(SPECS)
    gen, total = graph.node("gen"), graph.node("total")
    assert (gen.module, gen.parents, total.parents) == ("funcspec", (ENTRY,), ("gen",))
    assert dict(gen.extra) == {
        "funcname": "gen",
        "args": [1],
        "kwargs": {"n": 5},
        "executortype": "py",
    }
    assert (gen.priority, gen.timeout_s, gen.retries) == (5, 30.0, 3)
    assert (total.timeout_s, total.retries) == (None, 0)
    assert not gen.is_input and graph.input_nodes == ()


def test_wrapped_function_specs_load_like_the_bare_list(tmp_path: Path) -> None:
    path = tmp_path / "sum_wf.json"
    path.write_text(json.dumps({"functionspecs": SPECS}))
    graph = load(path)
    assert graph.nodes == load(SPECS).nodes
    assert graph.name == "sum_wf"


def test_function_specs_with_wrong_types_name_the_spec_and_key() -> None:
    with pytest.raises(GraphValidationError) as caught:
        load([{"nodename": "a", "funcname": "f", "priority": "high"}, {"funcname": "g"}])
    assert caught.value.problems == [
        "<memory>: function spec 'a': key 'priority': 'high' is not of type 'integer'",
        "<memory>: function spec #2: the required key 'nodename' is missing",
    ]


# flow strings


def fa() -> dict[str, int]:
    return {"a": 1}


def fb() -> None:
    return None


def test_a_flow_string_with_functions_becomes_python_nodes() -> None:
    graph = load_graph("a; b || c", functions={"a": fa, "b": fb, "c": lambda: None})
    assert graph.flow == "a ; (b || c)"
    assert [(n.name, n.parents) for n in graph] == [("a", (ENTRY,)), ("b", ("a",)), ("c", ("a",))]
    assert graph.node("a").module == "python"
    assert graph.node("a").extra["callable"] == f"{__name__}.fa"
    assert graph.node("c").extra["callable"] == "c"
    assert graph.input_nodes == ()


def test_sequenced_groups_are_barriers() -> None:
    graph = load_graph("(a || b); (c || d)")
    assert graph.node("c").parents == ("a", "b") and graph.node("d").parents == ("a", "b")


def test_a_bare_name_is_a_flow_when_functions_are_given() -> None:
    graph = load_graph("a", functions={"a": fa})
    assert list(graph.nodes) == ["a"]


def test_a_flow_name_without_a_function_points_at_its_column() -> None:
    with pytest.raises(GraphValidationError) as caught:
        load_graph("a; bb", functions={"a": fa, "b": fb})
    assert caught.value.problems == [
        "<flow>: step 'bb' (column 4): no function is given for it (functions: a, b)"
        " (did you mean 'b'?)"
    ]


def test_a_flow_that_does_not_parse_is_a_validation_error() -> None:
    with pytest.raises(GraphValidationError) as caught:
        load_graph("a; (b")
    assert "not closed" in caught.value.problems[0]


# sources and files


def test_a_string_that_is_neither_a_file_nor_a_flow_is_refused() -> None:
    with pytest.raises(GraphValidationError, match="is not a graph file that exists"):
        load_graph("no such thing")


def test_a_missing_graph_file_is_named() -> None:
    with pytest.raises(GraphValidationError, match=r"nope\.json: no such graph file"):
        load_graph("nope.json")


def test_a_file_without_extension_is_read_as_json_or_yaml_by_its_content(tmp_path: Path) -> None:
    (tmp_path / "a").write_text(json.dumps(workflow(IN)))
    (tmp_path / "b").write_text(yaml.safe_dump(workflow(IN)))
    assert load(tmp_path / "a").nodes == load(tmp_path / "b").nodes


def test_a_folder_is_not_a_graph_file(tmp_path: Path) -> None:
    with pytest.raises(GraphValidationError, match="is a folder"):
        load(tmp_path)


def test_yaml_dates_become_iso_text(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "workflow:\n  name: x\n  nodes:\n"
        "    - {name: In, module: source, args: {src: 2024-05-01}}\n"
    )
    assert load(tmp_path / "g.yaml").node("In").args["src"].value == "2024-05-01"


def test_values_that_are_not_json_are_refused(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "workflow:\n  name: x\n  nodes:\n    - {name: In, module: source, args: {src: !!set {a}}}\n"
    )
    with pytest.raises(GraphValidationError, match=r"nodes\[0\]\.args\.src: a set is not JSON"):
        load(tmp_path / "g.yaml")


def test_deep_nesting_is_refused_without_recursion_errors() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(GraphValidationError, match="nest deeper than"):
        load(workflow({"name": "In", "module": "source", "args": {"src": deep}}))


def test_deeply_nested_json_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GraphError):
        load(tmp_path / "g.json")


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\nworkflow: {name: x}\n")
    started = time.perf_counter()
    with pytest.raises(GraphValidationError, match="more than"):
        load(tmp_path / "bomb.yaml")
    assert time.perf_counter() - started < 5
