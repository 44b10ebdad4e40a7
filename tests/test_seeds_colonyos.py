"""The ColonyOS seed's own code runs against cryoflow with at most its imports changed.

The snippets are copies from the seed document colonyos-workflows.md, kept in
tests/data/seeds/ (each file names its section). They talk to a real head
(:class:`ColonyServer`) over HTTP through :mod:`cryoflow.colony.pycolonies`.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from executorkit import (
    BASE_IMAGE,
    DockerDaemon,
    docker_daemon_fixture,  # noqa: F401 - the docker_daemon fixture
)

from cryoflow.colony import containers
from cryoflow.colony.pycolonies import (
    Colonies,
    ColoniesError,
    Conditions,
    Crypto,
    FuncSpec,
    Workflow,
    colonies_client,
)
from cryoflow.colony.server import ColonyServer

SEEDS = Path(__file__).parent / "data" / "seeds"
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ColonyServer]:
    with ColonyServer(tmp_path / "served") as served:
        monkeypatch.setenv("CRYOFLOW_URL", str(served.url))
        yield served


class _Stop(BaseException):
    """Ends the seed's endless executor loop (it catches every Exception)."""


class _Stopped:
    def assign(self, *args: Any) -> Any:
        raise _Stop


class WfExecutor:
    """The seed's wf_executor.py: registration as in its tutorial, and its own loop."""

    def __init__(self, executortype: str = "wf-executor") -> None:
        namespace: dict[str, Any] = {"random": random}
        exec(compile((SEEDS / "colonyos_wf_executor.py").read_text(),  # noqa: S102
                     "colonyos_wf_executor.py", "exec"), namespace)
        self.start = namespace["start"].__get__(self)
        self.colonies, self.colonyname, self.colony_prvkey, _, _ = colonies_client()
        crypto = Crypto()
        self.executor_prvkey = crypto.prvkey()
        self.executorid = crypto.id(self.executor_prvkey)
        executor = {"executorname": "wf-executor-1", "executorid": self.executorid,
                    "colonyname": self.colonyname, "executortype": executortype}
        self.colonies.add_executor(executor, self.colony_prvkey)
        self.colonies.approve_executor(self.colonyname, "wf-executor-1", self.colony_prvkey)
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        with contextlib.suppress(_Stop), contextlib.redirect_stdout(io.StringIO()):
            self.start()

    def __enter__(self) -> WfExecutor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.colonies = _Stopped()  # type: ignore[assignment]


def run_snippet(name: str) -> tuple[dict[str, Any], str]:
    """Run a seed snippet as a script; its globals and what it printed."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile((SEEDS / name).read_text(), name, "exec"), namespace)  # noqa: S102
    return namespace, out.getvalue()


def test_the_seeds_python_submission_and_executor_loop_compute_the_sum(
        server: ColonyServer) -> None:
    with WfExecutor():
        namespace, printed = run_snippet("colonyos_submit_wf.py")
    graph = namespace["processgraph"]
    gen = namespace["colonies"].find_process("gen_node", graph.processids, namespace["prvkey"])
    assert len(gen.output) == 5 and all(1 <= n <= 100 for n in gen.output)
    assert namespace["process"].output == [sum(gen.output)]
    assert printed.splitlines() == [f"Workflow {graph.processgraphid} submitted",
                                    str(sum(gen.output))]


def test_the_seeds_json_workflow_runs_from_the_cli_with_the_seeds_executor(
        server: ColonyServer, tmp_path: Path) -> None:
    with WfExecutor():
        submitted = subprocess.run(
            [sys.executable, "-m", "cryoflow.cli.main", "submit",
             str(SEEDS / "colonyos_sum_wf.json"), "--url", str(server.url)],
            capture_output=True, text=True, check=True, cwd=REPO)
        workflow_id = submitted.stdout.strip()
        colonies = Colonies(url=server.url)
        graph = colonies.get_processgraph(workflow_id, "")
        summed = colonies.wait(colonies.find_process("sum_node", graph.processids, ""), 30, "")
    assert summed.state == "successful" and len(summed.output) == 1
    shown = subprocess.run([sys.executable, "-m", "cryoflow.cli.main", "get", workflow_id,
                            "--url", str(server.url)],
                           capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert "successful" in shown and "sum_node" in shown


def test_an_unknown_function_is_failed_by_the_seeds_executor(server: ColonyServer) -> None:
    colonies, colonyname, _, _, prvkey = colonies_client()
    wf = Workflow(colonyname=colonyname, functionspecs=[FuncSpec(
        funcname="mul", nodename="mul_node",
        conditions=Conditions(colonyname=colonyname, executortype="wf-executor"))])
    with WfExecutor():
        graph = colonies.submit_workflow(wf, prvkey)
        process = colonies.wait(colonies.find_process("mul_node", graph.processids, prvkey),
                                30, prvkey)
    assert process.state == "failed" and process.errors == ["Unknown function"]


def test_add_child_takes_the_seeds_parameters_and_grows_the_running_workflow(
        server: ColonyServer) -> None:
    seed_call = ("processgraphid, parentprocessid, childprocessid, funcspec, nodename, "
                 "insert, prvkey")
    params = list(inspect.signature(Colonies.add_child).parameters)[1:]
    assert ", ".join(params) == seed_call
    colonies, colonyname, colony_prvkey, _, prvkey = colonies_client()
    crypto = Crypto()
    executor_prvkey = crypto.prvkey()
    colonies.add_executor({"executorname": "grower", "executorid": crypto.id(executor_prvkey),
                           "executortype": "grow-executor"}, colony_prvkey)
    wf = Workflow(colonyname, [FuncSpec("plan", "plan_node",
                                        conditions=Conditions(executortype="grow-executor"))])
    graph = colonies.submit_workflow(wf, prvkey)
    process = colonies.assign(colonyname, 10, executor_prvkey)
    child = FuncSpec("check", conditions=Conditions(executortype="grow-executor"))
    colonies.add_child(processgraphid=graph.processgraphid, parentprocessid=process.processid,
                       childprocessid="", funcspec=child, nodename="check_node", insert=False,
                       prvkey=executor_prvkey)
    colonies.close(process.processid, ["planned"], executor_prvkey)
    grown = colonies.assign(colonyname, 10, executor_prvkey)
    assert (grown.spec.nodename, grown.input) == ("check_node", ["planned"])
    colonies.close(grown.processid, ["checked"], executor_prvkey)
    graph = colonies.get_processgraph(graph.processgraphid, prvkey)
    done = colonies.wait(colonies.find_process("check_node", graph.processids, prvkey), 20,
                         prvkey)
    assert done.output == ["checked"]


def test_attributes_set_by_one_process_are_seen_by_the_next(server: ColonyServer) -> None:
    colonies, colonyname, colony_prvkey, _, prvkey = colonies_client()
    crypto = Crypto()
    key = crypto.prvkey()
    colonies.add_executor({"executorname": "attr", "executorid": crypto.id(key),
                           "executortype": "attr-executor"}, colony_prvkey)
    conditions = Conditions(executortype="attr-executor")
    wf = Workflow(colonyname, [FuncSpec("first", "first", conditions=conditions),
                               FuncSpec("second", "second", conditions=Conditions(
                                   executortype="attr-executor", dependencies=["first"]))])
    colonies.submit_workflow(wf, prvkey)
    first = colonies.assign(colonyname, 10, key)
    attribute = colonies.add_attribute(first.processid, "threshold", {"min": 0.5}, key)
    colonies.close(first.processid, [], key)
    second = colonies.assign(colonyname, 10, key)
    assert [(a.key, a.value, a.targetid) for a in second.attributes] == [
        ("threshold", {"min": 0.5}, first.processid)]
    assert colonies.get_attribute(attribute.attributeid, prvkey).value == {"min": 0.5}
    with pytest.raises(ColoniesError, match="no attribute"):
        colonies.get_attribute("missing", prvkey)
    colonies.close(second.processid, [], key)


def test_a_key_that_no_executor_registered_is_refused_with_a_sentence(
        server: ColonyServer) -> None:
    colonies, colonyname, _, _, _ = colonies_client()
    with pytest.raises(ColoniesError, match="register it with add_executor"):
        colonies.assign(colonyname, 1, Crypto().prvkey())


def test_the_seeds_echo_workflow_runs_on_the_built_in_container_executor(
        server: ColonyServer, docker_daemon: DockerDaemon) -> None:
    spec = json.loads((SEEDS / "colonyos_echo_wf.json").read_text())
    assert {s["kwargs"]["docker-image"] for s in spec} == {BASE_IMAGE}
    colonies = Colonies(url=server.url)
    thread, stop = containers.start_in_thread(str(server.url), base_url=docker_daemon.base_url)
    try:
        graph = colonies.submit_workflow({"functionspecs": spec}, "")
        ended = {node: colonies.wait(colonies.find_process(node, graph.processids, ""), 60, "")
                 for node in ("task_a", "task_b", "task_c", "task_d")}
    finally:
        stop.set()
        thread.join(10)
    assert {n: (p.state, p.output) for n, p in ended.items()} == {
        "task_a": ("successful", ["TASK A"]), "task_b": ("successful", ["TASK B"]),
        "task_c": ("successful", ["TASK C"]), "task_d": ("successful", ["TASK D"])}


def test_the_container_executor_fails_a_command_with_its_exit_code_and_stderr(
        server: ColonyServer, docker_daemon: DockerDaemon) -> None:
    colonies = Colonies(url=server.url)
    spec = [{"nodename": "bad", "funcname": "execute",
             "kwargs": {"cmd": "echo broken >&2; exit 3", "docker-image": BASE_IMAGE},
             "conditions": {"executortype": "container-executor"}},
            {"nodename": "ghost", "funcname": "execute",
             "kwargs": {"cmd": "true", "docker-image": "local/not-built:never"},
             "conditions": {"executortype": "container-executor"}}]
    thread, stop = containers.start_in_thread(str(server.url), base_url=docker_daemon.base_url)
    try:
        graph = colonies.submit_workflow({"functionspecs": spec}, "")
        bad = colonies.wait(colonies.find_process("bad", graph.processids, ""), 60, "")
        ghost = colonies.wait(colonies.find_process("ghost", graph.processids, ""), 60, "")
    finally:
        stop.set()
        thread.join(10)
    assert bad.state == "failed" and bad.errors == ["the command exited with code 3: broken"]
    assert ghost.state == "failed" and "is not on the Docker daemon" in ghost.errors[0]


def test_a_process_no_executor_serves_says_so_and_times_out_after_maxwaittime(
        server: ColonyServer) -> None:
    colonies = Colonies(url=server.url)
    spec = [{"nodename": "orphan", "funcname": "execute", "maxwaittime": 2,
             "conditions": {"executortype": "nobody-runs-this"}}]
    graph = colonies.submit_workflow({"functionspecs": spec}, "")
    deadline = time.monotonic() + 10
    waiting = colonies.find_process("orphan", graph.processids, "")
    while waiting.waitingfor is None and time.monotonic() < deadline:
        time.sleep(0.05)
        waiting = colonies.find_process("orphan", graph.processids, "")
    assert waiting.state == "waiting"
    assert waiting.waitingfor == "no executor of type 'nobody-runs-this' is registered"
    shown = subprocess.run([sys.executable, "-m", "cryoflow.cli.main", "get",
                            graph.processgraphid, "--url", str(server.url)],
                           capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert "no executor of type 'nobody-runs-this' is registered" in shown
    ended = colonies.wait(waiting, 20, "")
    assert ended.state == "failed"
    assert ended.errors == [textwrap.shorten(
        "not assigned within maxwaittime 2s: no executor of type 'nobody-runs-this' is "
        "registered", 200)]


def test_a_container_past_its_maxexectime_is_killed_and_the_executor_goes_on(
        server: ColonyServer, docker_daemon: DockerDaemon) -> None:
    colonies = Colonies(url=server.url)
    slow = [{"nodename": "slow", "funcname": "execute", "maxexectime": 2,
             "kwargs": {"cmd": "sleep 60", "docker-image": BASE_IMAGE},
             "conditions": {"executortype": "container-executor"}}]
    quick = [{"nodename": "quick", "funcname": "execute",
              "kwargs": {"cmd": "echo still here", "docker-image": BASE_IMAGE},
              "conditions": {"executortype": "container-executor"}}]
    thread, stop = containers.start_in_thread(str(server.url), base_url=docker_daemon.base_url)
    try:
        started = time.monotonic()
        graph = colonies.submit_workflow({"functionspecs": slow}, "")
        ended = colonies.wait(colonies.find_process("slow", graph.processids, ""), 60, "")
        took = time.monotonic() - started
        after = colonies.submit_workflow({"functionspecs": quick}, "")
        done = colonies.wait(colonies.find_process("quick", after.processids, ""), 60, "")
    finally:
        stop.set()
        thread.join(10)
    assert ended.state == "failed" and "maxexectime 2s" in ended.errors[0] and took < 30
    assert (done.state, done.output) == ("successful", ["still here"])


def test_cryoflow_serve_with_containers_runs_the_seeds_echo_workflow(
        tmp_path: Path, docker_daemon: DockerDaemon) -> None:
    import os
    import signal

    env = {**os.environ, "DOCKER_HOST": docker_daemon.base_url}
    served = subprocess.Popen(
        [sys.executable, "-m", "cryoflow.cli.main", "serve", "--containers", "--state",
         str(tmp_path / "state")], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        assert served.stdout is not None
        url = served.stdout.readline().split()[-1]
        submitted = subprocess.run(
            [sys.executable, "-m", "cryoflow.cli.main", "submit",
             str(SEEDS / "colonyos_echo_wf.json"), "--url", url],
            capture_output=True, text=True, check=True, cwd=REPO)
        colonies = Colonies(url=url)
        graph = colonies.get_processgraph(submitted.stdout.strip(), "")
        last = colonies.wait(colonies.find_process("task_d", graph.processids, ""), 60, "")
    finally:
        os.killpg(served.pid, signal.SIGINT)
        served.wait(20)
    assert (last.state, last.output) == ("successful", ["TASK D"])
