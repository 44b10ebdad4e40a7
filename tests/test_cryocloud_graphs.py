"""CryoCloud's example graphs, as users wrote them, validate and (where their modules
exist) run with ``ccworkflow``; a graph may name an option like one of cryoflow's own
flags; CryoCloud-style input modules, runOnHead and serviceURL work end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from executorkit import (
    DockerDaemon,
    docker_daemon_fixture,  # noqa: F401 - the docker_daemon fixture
)

DATA = Path(__file__).parent / "data" / "cryocloud"
GRAPHS = DATA / "graphs"
MODULES = DATA / "modules"
STRICT = ["cachable", "cmdline", "communicate", "git", "runif", "testjob", "testjob2",
          "web_cryonite_ocean", "web_test"]
UNKNOWN_KEYS = {"run_in_docker": "fvolumes", "dockerbuild": "node"}
"""Graphs holding keys CryoCloud did not know either: they need --lenient."""

pytestmark = pytest.mark.timeout(180)


def ccworkflow(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cryoflow.cli.workflow", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def run_graph(graph: Path, tmp_path: Path, *args: str, **kw: Any) -> dict[str, Any]:
    """Run ``graph`` to its end; return its report's nodes of the one pebble."""
    report = tmp_path / "report.json"
    done = ccworkflow(str(graph), "--no-http", "--state", str(tmp_path / "state"),
                      "--report", str(report), *args, cwd=tmp_path, **kw)
    assert done.returncode == 0, done.stderr
    pebble = json.loads(report.read_text())["pebbles"][-1]
    return {name: (n["outcome"], n["output"]) for name, n in pebble["nodes"].items()}


def test_the_examples_are_all_here() -> None:
    assert sorted(p.stem for p in GRAPHS.glob("*.json")) == sorted([*STRICT, *UNKNOWN_KEYS])


@pytest.mark.parametrize("name", STRICT)
def test_a_cryocloud_example_graph_validates_as_written(name: str, tmp_path: Path) -> None:
    done = ccworkflow(str(GRAPHS / f"{name}.json"), "--validate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ": ok (" in done.stdout


@pytest.mark.parametrize("name", sorted(UNKNOWN_KEYS))
def test_an_example_with_a_key_cryocloud_never_read_validates_with_lenient(
        name: str, tmp_path: Path) -> None:
    strict = ccworkflow(str(GRAPHS / f"{name}.json"), "--validate", cwd=tmp_path)
    assert strict.returncode == 2 and f"unknown key '{UNKNOWN_KEYS[name]}'" in strict.stderr
    lenient = ccworkflow(str(GRAPHS / f"{name}.json"), "--validate", "--lenient", cwd=tmp_path)
    assert lenient.returncode == 0, lenient.stderr


def test_a_web_view_graph_with_an_output_default_and_a_host_reference_only_warns(
        tmp_path: Path) -> None:
    done = ccworkflow(str(GRAPHS / "web_cryonite_ocean.json"), "--validate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '{"stat": "parent.node"}' in done.stderr
    text = (GRAPHS / "web_cryonite_ocean.json").read_text()
    declared = tmp_path / "declared.json"  # the netwatcher says what its posts hold
    declared.write_text(text.replace('"config": "Cryonite.NetWatcher",',
                                     '"config": "Cryonite.NetWatcher", "outputs": '
                                     '{"fullpath": "the posted product"},'))
    done = ccworkflow(str(declared), "--validate", "--modules", str(GRAPHS / "modules"),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning: " in done.stderr and "output 'NetWatcher.configOverride'" in done.stderr


def test_the_legacy_job_graph_reads_node_options_and_inverted_args_with_warnings(
        tmp_path: Path) -> None:
    done = ccworkflow(str(GRAPHS / "testjob2.json"), "--explain", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "arg src = output Input.fullPath (default null)" in done.stdout
    assert "arg recursive = config recurse" in done.stdout
    assert "move the node's 'options' into 'args'" in done.stderr


def test_the_cmdline_example_runs_noop_with_the_option(tmp_path: Path) -> None:
    nodes = run_graph(GRAPHS / "cmdline.json", tmp_path, "--time", "0.2")
    assert nodes["Start"] == ("success", {"time": 0.2, "caller": "Start"})
    assert nodes["Test"] == ("success", {"time": 0.2})


def test_the_runif_example_runs_the_node_its_condition_picks(tmp_path: Path) -> None:
    nodes = run_graph(GRAPHS / "runif.json", tmp_path, "--time", "1")
    assert nodes["Test"][0] == "success" and nodes["Test2"][0] == "skipped"


def test_the_cachable_example_runs_twice_into_one_state(tmp_path: Path) -> None:
    first = run_graph(GRAPHS / "cachable.json", tmp_path, "--time", "0.1")
    second = run_graph(GRAPHS / "cachable.json", tmp_path, "--time", "0.1")
    assert first["Test"] == second["Test"] == ("success", {"time": 0.1})


def test_the_git_example_clones_the_repository_it_is_given(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=src, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=src, env=env,
                   check=True)
    nodes = run_graph(GRAPHS / "git.json", tmp_path, "--n", "repo", "--url", str(src),
                      "--branch", "main", "--dst", str(tmp_path / "clones"))
    assert nodes["git-2"][0] == "success"
    assert nodes["git-2"][1]["branch"] == "main"
    assert (tmp_path / "clones" / "repo" / ".git").is_dir()


def test_the_dockerbuild_example_builds_an_image(docker_daemon: DockerDaemon,
                                                 tmp_path: Path) -> None:
    import docker

    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM local/debian-py:bookworm\nRUN echo built > /built.txt\n")
    tag = f"cryoflow-test/build:{os.getpid()}"
    nodes = run_graph(GRAPHS / "dockerbuild.json", tmp_path, "--lenient", "--workdir",
                      str(context), "--target", tag, env={"DOCKER_HOST": docker_daemon.base_url})
    assert nodes["Build"] == ("success", {"target": tag})
    client = docker.DockerClient(base_url=docker_daemon.base_url)
    try:
        out = client.containers.run(tag, ["cat", "/built.txt"], remove=True)
        assert out == b"built\n"
    finally:
        client.images.remove(tag, force=True)
        client.close()


# an option named like a cryoflow flag


SCHEMA_GRAPH = {"workflow": {
    "name": "Waves",
    "options": {"schema": {"default": "wave.schema", "help": "Schema for posts"},
                "workers": {"default": "two"}},
    "nodes": [
        {"name": "Start", "module": "cmdline"},
        {"name": "Use", "module": "noop", "downstreamOf": ["Start"],
         "args": {"schema": {"option": "schema"}, "workers": {"option": "workers"}}},
    ]}}


def test_a_graph_option_named_schema_takes_the_flag_and_cryoflows_stays_reachable(
        tmp_path: Path) -> None:
    graph = tmp_path / "waves.json"
    graph.write_text(json.dumps(SCHEMA_GRAPH))
    nodes = run_graph(graph, tmp_path, "--schema", "wind.schema", "--workers", "many",
                      "--cryoflow-workers", "1")
    assert nodes["Use"] == ("success", {"schema": "wind.schema", "workers": "many"})
    schema = ccworkflow(str(graph), "--cryoflow-schema", cwd=tmp_path)
    assert schema.returncode == 0 and json.loads(schema.stdout)["$id"] == "urn:cryoflow:graph:1"
    helped = ccworkflow(str(graph), "--help", cwd=tmp_path)
    assert "--cryoflow-schema" in helped.stdout and "Schema for posts" in helped.stdout
    assert "the workflow's option takes --schema" in helped.stderr


def test_an_option_may_not_take_a_flag_cryocloud_had(tmp_path: Path) -> None:
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"workflow": {"name": "x", "options": {"node": {}},
                                              "nodes": [{"name": "S", "module": "cmdline"}]}}))
    done = ccworkflow(str(graph), "--validate", cwd=tmp_path)
    assert done.returncode == 2
    assert "option 'node' clashes with ccworkflow's own flag --node; rename it" in done.stderr


# input modules, runOnHead and serviceURL


def test_a_cryocloud_style_input_module_watches_a_folder_with_its_own_name(
        tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    graph = tmp_path / "watch.json"
    graph.write_text(json.dumps({"workflow": {"name": "Watch", "nodes": [
        {"name": "Drop", "module": "legacy_watch", "args": {"src": str(inbox)}},
        {"name": "Count", "module": "status_user", "downstreamOf": ["Drop"],
         "args": {"items": [{"output": "Drop.relpath"}], "label": {"output": "Drop.caller"}}},
    ]}}))
    graph.write_text(graph.read_text().replace('[{"output": "Drop.relpath"}]', '["x"]'))
    report = tmp_path / "r.json"
    head = subprocess.Popen(
        [sys.executable, "-m", "cryoflow.cli.workflow", str(graph), "--modules", str(MODULES),
         "--no-http", "--state", str(tmp_path / "st"), "--report", str(report)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        (inbox / "scene.zip").write_bytes(b"1234")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (tmp_path / "st" / "state.db").exists():
            time.sleep(0.2)
        time.sleep(3)
    finally:
        head.send_signal(signal.SIGINT)
        _out, err = head.communicate(timeout=60)
    pebbles = json.loads(report.read_text())["pebbles"]
    assert len(pebbles) == 1, err
    drop = pebbles[0]["nodes"]["Drop"]["output"]
    assert drop["caller"] == "Drop" and drop["relpath"] == "scene.zip" and drop["datasize"] == 4
    assert pebbles[0]["nodes"]["Count"]["output"]["counted"] == 1


def test_a_run_on_head_node_runs_in_the_head_process(tmp_path: Path) -> None:
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"workflow": {"name": "OnHead", "nodes": [
        {"name": "Start", "module": "cmdline"},
        {"name": "Here", "module": "pid_report", "runOnHead": True, "downstreamOf": ["Start"]},
        {"name": "There", "module": "pid_report", "downstreamOf": ["Start"]},
    ]}}))
    report = tmp_path / "r.json"
    head = subprocess.Popen(
        [sys.executable, "-m", "cryoflow.cli.workflow", str(graph), "--modules", str(MODULES),
         "--no-http", "--state", str(tmp_path / "st"), "--report", str(report)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _out, err = head.communicate(timeout=120)
    assert head.returncode == 0, err
    nodes = json.loads(report.read_text())["pebbles"][0]["nodes"]
    assert nodes["Here"]["output"]["pid"] == head.pid
    assert nodes["There"]["output"]["pid"] != head.pid


class _Service:
    """A CryoCloud microservice's /stub (a module source) on loopback."""

    def __init__(self, stub: str) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                body = outer.stub.encode() if self.path == "/stub" else b"not here"
                self.send_response(200 if self.path == "/stub" else 404)
                self.end_headers()
                self.wfile.write(body)

        self.stub = stub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


@pytest.fixture
def service() -> Iterator[_Service]:
    stub = 'ccmodule = {"inputs": {"scene": "Scene to process"}, "outputs": {}}\n'
    started = _Service(stub)
    yield started
    started.server.shutdown()


def test_a_service_node_whose_args_the_service_does_not_take_is_refused_at_start(
        service: _Service, tmp_path: Path) -> None:
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"workflow": {"name": "Svc", "nodes": [
        {"name": "Start", "module": "cmdline"},
        {"name": "Remote", "serviceURL": service.url, "downstreamOf": ["Start"],
         "args": {"scene": "S1", "colour": "red"}},
    ]}}))
    done = ccworkflow(str(graph), "--no-http", "--state", str(tmp_path / "st"), cwd=tmp_path)
    assert done.returncode == 2
    assert f"service {service.url.rstrip('/')} does not take colour (it takes scene)" in done.stderr


def test_replicas_caps_how_many_jobs_of_a_node_run_at_once() -> None:
    from cryoflow.graph import load_graph

    def node(**keys: Any) -> dict[str, Any]:
        return {"module": "noop", "downstreamOf": ["Start"], **keys}

    graph = load_graph({"workflow": {"name": "r", "nodes": [
        {"name": "Start", "module": "cmdline"},
        node(name="Two", replicas=2), node(name="Plain"),
        node(name="Both", replicas=2, max_parallel=5)]}})
    caps = {n.name: n.max_parallel for n in graph if not n.is_input}
    assert caps == {"Two": 2, "Plain": None, "Both": 5}


def test_a_reference_to_the_caller_of_an_input_is_only_a_note(tmp_path: Path) -> None:
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"workflow": {"name": "c", "nodes": [
        {"name": "In", "module": "dirwatcher", "args": {"src": str(tmp_path)}},
        {"name": "Use", "module": "noop", "downstreamOf": ["In"],
         "args": {"who": {"output": "parent.caller"}}}]}}))
    done = ccworkflow(str(graph), "--validate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no parent has an output 'caller'" in done.stderr


def test_the_communicate_example_lets_the_two_inputs_pebbles_meet(tmp_path: Path) -> None:
    graph = json.loads((GRAPHS / "communicate.json").read_text())
    inbox = tmp_path / "input"
    inbox.mkdir()
    for node in graph["workflow"]["nodes"]:
        if node["module"] == "dirwatcher":
            node["args"].update(src=str(inbox), stabilize=0.3)
        if node["module"] == "communicate":
            node["args"]["dir"] = str(tmp_path / "meet")
    path = tmp_path / "communicate.json"
    path.write_text(json.dumps(graph))
    report = tmp_path / "r.json"
    head = subprocess.Popen(
        [sys.executable, "-m", "cryoflow.cli.workflow", str(path), "--modules",
         str(GRAPHS / "modules"), "--no-http", "--state", str(tmp_path / "st"), "--report",
         str(report)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        (inbox / "scene.dat").write_text("x")
        time.sleep(8)
    finally:
        head.send_signal(signal.SIGINT)
        _out, err = head.communicate(timeout=60)
    pebbles = json.loads(report.read_text())["pebbles"]
    assert len(pebbles) == 2, err
    sync = [p["nodes"]["SyncPoint"] for p in pebbles]
    assert [s["outcome"] for s in sync] == ["success", "success"], err
    assert all(s["output"]["msgid"] == "scene.dat" for s in sync)
    assert sync[0]["output"]["parties"] == sync[1]["output"]["parties"]
    assert len(sync[0]["output"]["parties"]) == 2
    # resolveOn names a node here; parties are named by their 'party' arg (default: the
    # pebble), so neither party is the resolving one and both continue
    assert [s["output"]["resolved"] for s in sync] == [False, False]
    assert [p["nodes"]["End"]["outcome"] for p in pebbles] == ["success", "success"]


def test_cryoclouds_debug_and_threads_flags_still_work(tmp_path: Path) -> None:
    nodes = run_graph(GRAPHS / "cmdline.json", tmp_path, "--time", "0", "--threads", "1",
                      "--debug")
    assert nodes["Test"] == ("success", {"time": 0})
    from cryoflow.cli.workflow import build_parser, run_settings

    ns = build_parser().parse_args(["g.json", "--threads", "3", "--debug"])
    settings = run_settings(ns)
    assert (settings.workers, settings.loglevel) == (3, "DEBUG")
    ns = build_parser().parse_args(["g.json", "--threads", "3", "--workers", "2"])
    assert run_settings(ns).workers == 2


def test_cryoclouds_standalone_flag_is_taken_and_changes_nothing(tmp_path: Path) -> None:
    nodes = run_graph(GRAPHS / "cmdline.json", tmp_path, "--time", "0", "--standalone")
    assert nodes["Test"] == ("success", {"time": 0})


@pytest.mark.parametrize(("flag", "instead"), [
    (["--ip", "10.0.0.1"], "--http HOST:PORT"),
    (["--reset-counters"], "--fresh starts over"),
    (["--name=scenes"], "--state DIR"),
    (["--node", "gpu1"], '"ccnode" key'),
    (["--estimate"], "--explain"),
])
def test_cryoclouds_other_flags_are_refused_saying_what_to_use_instead(
        tmp_path: Path, flag: list[str], instead: str) -> None:
    done = ccworkflow(str(GRAPHS / "cmdline.json"), *flag, cwd=tmp_path)
    assert done.returncode == 2
    assert f"{flag[0].split('=')[0]} is CryoCloud's" in done.stderr and instead in done.stderr
    assert "did you mean" not in done.stderr
    assert not (tmp_path / ".cryoflow").exists()  # refused before anything ran
