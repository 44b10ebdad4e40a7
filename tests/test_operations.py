"""CloudHarness parity: operations, tasks, execute(), shared folders, TTL, notices, pods."""

from __future__ import annotations

import ast
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import flows
import pytest
from executorkit import docker_daemon_fixture  # noqa: F401 - the docker_daemon fixture

from cryoflow.errors import ConfigError
from cryoflow.graph.model import Outcome, WorkerClass, frozen_map
from cryoflow.pyapi import operations, opsupport
from cryoflow.pyapi.operations import (
    BashTask,
    CommandBasedTask,
    CustomTask,
    PodExecutionContext,
    PythonTask,
)
from cryoflow.pyapi.records import RunFailed, RunStatus
from cryoflow.pyapi.tasks import Context
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.inline import InlineExecutor
from cryoflow.workers.runtime import BUILTIN_MODULES, run_task


def deps(run: operations.OperationRun) -> dict[str, tuple[str, ...]]:
    return {n.name: n.dependencies for n in run.wait(20).nodes.values()}


def test_the_module_offers_every_operation_and_task_type() -> None:
    for name in ("SingleTaskOperation", "PipelineOperation", "ParallelOperation",
                 "SimpleDagOperation", "DistributedSyncOperation",
                 "DistributedSyncOperationWithResults", "PythonTask", "BashTask", "CustomTask",
                 "CommandBasedTask"):
        assert callable(getattr(operations, name))


def test_a_single_task_operation_runs_a_python_function(tmp_path: Path) -> None:
    op = operations.SingleTaskOperation("single-", PythonTask("one", flows.fa), root=tmp_path,
                                        inline=True)
    record = op.execute().wait(20)
    assert record.status is RunStatus.FINISHED and record.results == {"one": 1}


def test_a_pipeline_runs_its_tasks_one_after_the_other(tmp_path: Path) -> None:
    op = operations.PipelineOperation("pipe-", [PythonTask(n, flows.fa) for n in "abc"],
                                      root=tmp_path, inline=True)
    assert deps(op.execute()) == {"a": (), "b": ("a",), "c": ("b",)}


def test_a_parallel_operation_runs_its_tasks_at_the_same_time(tmp_path: Path) -> None:
    op = operations.ParallelOperation("par-", (PythonTask("p1", flows.fa),
                                               PythonTask("p2", flows.fa)),
                                      root=tmp_path, inline=True)
    assert deps(op.execute()) == {"p1": (), "p2": ()}


def test_a_simple_dag_is_a_pipeline_of_parallel_groups(tmp_path: Path) -> None:
    t = {n: PythonTask(n, flows.fa) for n in "abcd"}
    op = operations.SimpleDagOperation("dag-", t["a"], (t["b"], t["c"]), t["d"], root=tmp_path,
                                       inline=True)
    assert deps(op.execute()) == {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}


def test_a_bash_task_runs_a_script_and_keeps_its_output(tmp_path: Path) -> None:
    op = operations.DistributedSyncOperation("bash-", BashTask("hello", "echo hi; echo $((6*7))"),
                                             root=tmp_path, inline=True)
    assert op.execute().results["hello"]["stdout"] == "hi\n42\n"


def test_a_command_based_task_runs_an_argument_list_without_a_shell(tmp_path: Path) -> None:
    op = operations.DistributedSyncOperation(
        "cmd-", CommandBasedTask("cmd", ["echo", "$HOME", "; ls"]), root=tmp_path, inline=True)
    assert op.execute().results["cmd"]["stdout"] == "$HOME ; ls\n"


def test_extra_keyword_arguments_become_environment_variables(tmp_path: Path) -> None:
    op = operations.DistributedSyncOperation(
        "env-", [PythonTask("py", flows.env_value, GREETING="hello"),
                 BashTask("sh", 'echo "$GREETING $N"', GREETING="hi", N=3)],
        root=tmp_path, inline=True)
    results = op.execute().results
    assert (results["py"], results["sh"]["stdout"]) == ("hello", "hi 3\n")


class Recording:
    """An executor that runs tasks inline and remembers which it was given."""

    def __init__(self) -> None:
        self.inner = InlineExecutor(slots={WorkerClass.NORMAL: 1})
        self.tasks: list[Task] = []

    async def start(self, sink: JobSink) -> None:
        await self.inner.start(sink)

    async def stop(self, timeout_s: float = 10.0) -> None:
        await self.inner.stop(timeout_s)

    def capacity(self) -> Mapping[WorkerClass, int]:
        return self.inner.capacity()

    def free_slots(self) -> Mapping[WorkerClass, int]:
        return self.inner.free_slots()

    def submit(self, task: Task) -> None:
        self.tasks.append(task)
        self.inner.submit(task)

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        self.inner.cancel(job_id, grace_s)


def test_a_custom_task_runs_its_command_through_the_container_executor(tmp_path: Path) -> None:
    containers = Recording()
    op = operations.DistributedSyncOperation(
        "custom-", [PythonTask("local", flows.fa),
                    CustomTask("print-file", "myapp-mytask", command=["echo", "x"], V="1")],
        root=tmp_path, inline=True, containers=lambda: containers)
    record = op.execute()
    assert record.results["print-file"]["stdout"] == "x\n"
    [task] = containers.tasks
    assert (task.node, task.docker, task.args["command"]) == ("print-file", "myapp-mytask",
                                                              ["echo", "x"])
    assert task.args["env"] == {"V": "1"}


def test_a_custom_task_on_kubernetes_carries_the_image_and_the_pod_context() -> None:
    context = Context(pod=opsupport.pod_settings(PodExecutionContext("a", "b", required=True)),
                      container_executor="kubernetes")
    node = CustomTask("t", "img", command=["true"]).node("t", (), context)
    assert (node.image, node.docker) == ("img", None)
    assert node.extra["kubernetes"]["labels"] == {"a": "b"}


def test_a_custom_task_without_a_command_on_kubernetes_asks_for_one() -> None:
    with pytest.raises(ConfigError, match=r"give command=.*which the kubernetes executor"):
        CustomTask("t", "img").node("t", (), Context(container_executor="kubernetes"))


def test_async_execute_returns_at_once_with_a_run_name_and_a_status_url(tmp_path: Path) -> None:
    gate = threading.Event()
    op = operations.SingleTaskOperation("test-op-", PythonTask("w", lambda: gate.wait(10)),
                                        root=tmp_path, inline=True)
    run = op.execute()
    try:
        assert run.name.startswith("test-op-") and len(run.name) == len("test-op-") + 5
        assert run.status_url is not None and run.status is RunStatus.RUNNING
        with urllib.request.urlopen(run.status_url, timeout=10) as response:
            assert json.load(response)["state"] == "active"
    finally:
        gate.set()
    assert run.wait(20).status is RunStatus.FINISHED
    assert (tmp_path / run.name / "state.db").exists()


def test_sync_execute_blocks_until_done_and_raises_on_failure(tmp_path: Path) -> None:
    ok = operations.DistributedSyncOperation("ok-", PythonTask("a", flows.fa), root=tmp_path)
    assert ok.execute().results == {"a": 1}
    bad = operations.DistributedSyncOperation("bad-", [PythonTask("a", flows.boom),
                                                       PythonTask("b", flows.fa)],
                                              root=tmp_path, inline=True)
    with pytest.raises(RunFailed, match="a failed.*never started: b"):
        bad.execute()


def test_sync_execute_with_a_timeout_returns_the_unfinished_record(tmp_path: Path) -> None:
    gate = threading.Event()
    op = operations.DistributedSyncOperation("slow-", PythonTask("w", lambda: gate.wait(10)),
                                             root=tmp_path, inline=True)
    record = op.execute(timeout_s=0.3)
    gate.set()
    assert record.status is RunStatus.RUNNING


def write_files() -> None:
    import os

    base = Path(os.environ["SHARED_DIRECTORY"])
    (base / "sub").mkdir(exist_ok=True)
    (base / "sub" / "out.txt").write_text("result")


def test_with_results_returns_the_files_the_tasks_left_in_the_shared_directory(
        tmp_path: Path) -> None:
    op = operations.DistributedSyncOperationWithResults(
        "res-", [PythonTask("py", write_files), BashTask("sh", "echo two > two.txt")],
        root=tmp_path, inline=True)
    assert op.execute() == {"sub/out.txt": b"result", "two.txt": b"two\n"}
    assert not (tmp_path / "volumes").exists() or not any((tmp_path / "volumes").iterdir())


def test_a_shared_directory_gives_every_task_of_the_run_the_same_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    op = operations.DistributedSyncOperation(
        "shared-", [BashTask("w", "echo data > f.txt"), BashTask("r", "cat f.txt")],
        shared_directory=str(shared), root=tmp_path, inline=True)
    assert op.execute().results["r"]["stdout"] == "data\n"
    assert (shared / "f.txt").read_text() == "data\n"


def test_shared_directory_specs_name_volumes_paths_and_read_only(tmp_path: Path) -> None:
    (tmp_path / "volumes" / "kept").mkdir(parents=True)
    dirs = opsupport.shared_dirs(["myclaim:/opt/shared:ro", "kept:/opt/k"], tmp_path)
    assert [(d.host.name, d.mount, d.read_only, d.ephemeral) for d in dirs] == [
        ("myclaim", "/opt/shared", True, True), ("kept", "/opt/k", False, False)]
    with pytest.raises(ConfigError, match=r"\[NAME:\]PATH\[:ro\]"):
        opsupport.shared_dirs("a:b:c:d", tmp_path)


def test_the_ttl_strategy_prunes_finished_runs_and_none_keeps_them(tmp_path: Path) -> None:
    gone = operations.DistributedSyncOperation(
        "gone-", PythonTask("a", flows.fa), root=tmp_path, inline=True,
        ttl_strategy={"secondsAfterSuccess": 0})
    kept = operations.DistributedSyncOperation("kept-", PythonTask("a", flows.fa),
                                               root=tmp_path, inline=True, ttl_strategy=None)
    first = gone.execute()
    assert (tmp_path / first.workflow / "state.db").exists()
    second = kept.execute()  # every execute() prunes what has expired first
    assert not (tmp_path / first.workflow).exists()
    assert opsupport.prune_expired(tmp_path) == []
    assert (tmp_path / second.workflow / "state.db").exists()
    info = {"ttl": {"secondsAfterCompletion": 60, "secondsAfterFailure": 600},
            "finished": 100.0, "status": "failed"}
    assert opsupport.expires_at(info) == 160.0


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[Any]]]:
    received: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_on_exit_notify_posts_status_payload_and_workflow_on_success_and_failure(
        tmp_path: Path, webhook: tuple[str, list[Any]]) -> None:
    url, received = webhook
    notify = {"url": url, "payload": json.dumps({"insert": 1})}
    ok = operations.DistributedSyncOperation("ok-", PythonTask("a", flows.fa), root=tmp_path,
                                             inline=True, on_exit_notify=notify)
    bad = operations.DistributedSyncOperation("bad-", PythonTask("a", flows.boom),
                                              root=tmp_path, inline=True, on_exit_notify=notify)
    record = ok.execute()
    with pytest.raises(RunFailed):
        bad.execute()
    assert received[0] == {"status": "Succeeded", "payload": '{"insert": 1}',
                           "workflow": record.workflow}
    assert received[1]["status"] == "Failed"


def test_on_exit_notify_can_send_to_a_queue_topic(tmp_path: Path) -> None:
    op = operations.DistributedSyncOperation(
        "q-", PythonTask("a", flows.fa), root=tmp_path, inline=True,
        on_exit_notify={"queue": "my_queue", "payload": "p"})
    record = op.execute()
    assert opsupport.read_queue(tmp_path, "my_queue") == [
        {"status": "Succeeded", "payload": "p", "workflow": record.workflow}]


def test_a_pod_context_maps_to_the_kubernetes_affinity_and_labels() -> None:
    preferred = opsupport.pod_settings(PodExecutionContext(key="a", value="b"))
    term = preferred["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["labelSelector"]["matchExpressions"] == [
        {"key": "a", "operator": "In", "values": ["b"]}]
    required = opsupport.pod_settings(PodExecutionContext("a", "b", required=True))
    assert "requiredDuringSchedulingIgnoredDuringExecution" in required["affinity"]["podAffinity"]


def test_task_names_are_normalised_and_duplicates_refused_before_anything_runs(
        tmp_path: Path) -> None:
    op = operations.ParallelOperation("n-", [PythonTask("My Task_1", flows.fa)], root=tmp_path,
                                      inline=True)
    assert list(op.execute().wait(20).nodes) == ["my-task-1"]
    twice = operations.ParallelOperation("d-", [PythonTask("My_Task", flows.fa),
                                                PythonTask("my task", flows.fa)],
                                         root=tmp_path / "dup", inline=True)
    with pytest.raises(ConfigError, match="'My_Task' and 'my task' have the same name 'my-task'"):
        twice.execute()
    assert not (tmp_path / "dup").exists()


@pytest.mark.parametrize("name", ["python", "bash"])
def test_the_python_and_bash_modules_declare_a_literal_ccmodule(name: str) -> None:
    tree = ast.parse((BUILTIN_MODULES / f"{name}.py").read_text())
    [declared] = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", "") == "ccmodule"]
    assert {"description", "inputs", "outputs", "defaults", "status"} <= set(declared)


def bash(args: dict[str, Any], cancel: threading.Event | None = None) -> JobResult:
    task = Task(id="1/b#1", pebble_id=1, node="b", module="bash", module_ref=None, args=args)
    return run_task(task, WorkerHandle("w"), cancel or threading.Event())


def test_the_bash_module_fails_on_an_exit_code_other_than_zero() -> None:
    result = bash({"script": "echo oops >&2; exit 3"})
    assert result.outcome is Outcome.ERROR
    assert result.error == "RuntimeError: bash exited with code 3: oops"


def test_the_bash_module_stops_the_process_when_the_job_is_cancelled() -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    result = bash({"command": ["sleep", "30"]}, cancel)
    assert result.outcome is Outcome.CANCEL and time.monotonic() - started < 5


# ----------------------------------------------------------------------------- direct ops


def test_a_direct_operation_returns_the_result_of_its_task_at_once(tmp_path: Path) -> None:
    single = operations.DirectOperation("direct-", PythonTask("one", flows.fa), root=tmp_path)
    assert single.execute() == 1
    both = operations.DirectOperation("direct-", [PythonTask("one", flows.fa),
                                                  BashTask("two", "echo 2")], root=tmp_path)
    assert both.execute() == {"one": 1, "two": {"returncode": 0, "stdout": "2\n", "stderr": ""}}


def test_a_direct_operation_raises_when_its_task_fails_and_refuses_containers(
        tmp_path: Path) -> None:
    with pytest.raises(RunFailed, match="boom"):
        operations.DirectOperation("direct-", BashTask("boom", "echo boom >&2; exit 1"),
                                   root=tmp_path).execute()
    with pytest.raises(ConfigError, match="not in containers; use SingleTaskOperation"):
        operations.DirectOperation("direct-", CustomTask("c", "img", command=["true"]))


def test_a_resource_query_lists_the_runs_with_status_results_and_errors(tmp_path: Path) -> None:
    operations.DirectOperation("good-", PythonTask("one", flows.fa), root=tmp_path).execute()
    with pytest.raises(RunFailed):
        operations.DirectOperation("bad-", BashTask("no", "exit 3"), root=tmp_path).execute()
    runs = operations.ResourceQueryOperation("q", root=tmp_path).execute()
    assert [(r["name"][:4], r["status"]) for r in runs] == [("good", "finished"),
                                                              ("bad-", "failed")]
    assert runs[0]["results"] == {"one": 1} and "exit" in runs[1]["errors"]["no"]
    assert runs[0]["expires"] == pytest.approx(runs[0]["finished"] + 20 * 60)
    failed = operations.ResourceQueryOperation("q", root=tmp_path, status="failed").execute()
    assert [r["name"][:4] for r in failed] == ["bad-"]
    assert operations.ResourceQueryOperation("q", root=tmp_path / "none").execute() == []


def test_a_data_query_reads_the_files_of_a_volume(tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "myclaim"
    (volume / "sub").mkdir(parents=True)
    (volume / "a.txt").write_text("a")
    (volume / "sub" / "b.csv").write_text("b")
    query = operations.DataQueryOperation("data", "myclaim:/opt/shared", root=tmp_path)
    assert query.execute() == {"a.txt": b"a", "sub/b.csv": b"b"}
    only = operations.DataQueryOperation("data", "myclaim:/x", pattern="**/*.csv", root=tmp_path)
    assert only.execute() == {"sub/b.csv": b"b"}
    with pytest.raises(ConfigError, match="there is no data to query"):
        operations.DataQueryOperation("data", "other:/x", root=tmp_path).execute()


# ----------------------------------------------------------------------------- read-only


def write_shared() -> str:
    (Path(os.environ["SHARED_DIRECTORY"]) / "new.txt").write_text("x")
    return "wrote"


def read_shared() -> str:
    return (Path(os.environ["SHARED_DIRECTORY"]) / "data.txt").read_text()


@pytest.mark.parametrize("task", [
    PythonTask("py", write_shared),
    BashTask("sh", "echo y > y.txt"),
    CommandBasedTask("cmd", ["touch", "z.txt"]),
])
def test_a_local_task_cannot_write_into_a_read_only_shared_directory(
        tmp_path: Path, task: Any) -> None:
    volume = tmp_path / "volumes" / "myclaim"
    volume.mkdir(parents=True)
    (volume / "data.txt").write_text("data")
    op = operations.DistributedSyncOperation("ro-", task, root=tmp_path, inline=True,
                                             shared_directory="myclaim:/opt/shared:ro")
    with pytest.raises(RunFailed, match="Read-only file system"):
        op.execute()
    assert sorted(p.name for p in volume.iterdir()) == ["data.txt"]


def test_a_local_task_reads_a_read_only_folder_and_writes_a_writable_one(tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "myclaim"
    volume.mkdir(parents=True)
    (volume / "data.txt").write_text("data")
    op = operations.DistributedSyncOperation(
        "ro-", [PythonTask("read", read_shared),
                BashTask("copy", 'cp data.txt "$SHARED_DIRECTORY_1"/')],
        root=tmp_path, inline=True,
        shared_directory=["myclaim:/opt/shared:ro", f"{tmp_path / 'out'}"])
    (tmp_path / "out").mkdir()
    record = op.execute()
    assert record.results["read"] == "data"
    assert (tmp_path / "out" / "data.txt").read_text() == "data"
    assert sorted(p.name for p in volume.iterdir()) == ["data.txt"]


def test_the_read_only_wrapper_refuses_a_bad_command_line() -> None:
    from cryoflow.pyapi import readonly

    assert readonly.main(["--read-only", "/tmp"]) == 2


# ----------------------------------------------------------------------------- images


def test_an_image_without_a_default_command_or_not_on_the_daemon_is_named(
        tmp_path: Path, docker_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_daemon.base_url)
    missing = operations.SingleTaskOperation("img-", CustomTask("t", "local/never-built:x"),
                                             root=tmp_path, applications=tmp_path / "apps")
    with pytest.raises(ConfigError, match="is not on the Docker daemon and no application"):
        missing.execute()
    folder = tmp_path / "apps" / "demo" / "tasks" / "broken"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM local/debian-py:bookworm\nRUN exit 7\n")
    broken = operations.SingleTaskOperation("img-", CustomTask("t", "demo-broken"),
                                            root=tmp_path, applications=tmp_path / "apps")
    with pytest.raises(ConfigError, match=r"image 'demo-broken' from .*Dockerfile does not build"):
        broken.execute()


def test_an_application_task_image_is_found_by_app_and_task_name(tmp_path: Path) -> None:
    from cryoflow.pyapi.images import find_task_folder

    folder = tmp_path / "my-app" / "tasks" / "do-it"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM scratch\n")
    assert find_task_folder("my-app-do-it", [tmp_path]) == folder
    assert find_task_folder("my-app-other", [tmp_path]) is None
    assert find_task_folder("local/my-app-do-it:1", [tmp_path]) is None


def test_a_volume_wins_over_a_host_folder_of_the_same_path_named_in_the_args(
        tmp_path: Path) -> None:
    from cryoflow.workers.docker_plan import BindMount, plan_mounts

    same = tmp_path / "opt-shared"
    same.mkdir()
    job = Task(id="1/t#1", pebble_id=1, module="bash", module_ref="bash.py", workflow="w",
               node="t", args=frozen_map({"env": {"SHARED_DIRECTORY": str(same)}}),
               worker_class=WorkerClass.NORMAL,
               volumes=((str(tmp_path / "vol"), str(same), "ro"),))
    mounts = plan_mounts(job, package=False)
    assert [m for m in mounts if m.target == str(same)] == [
        BindMount(str(tmp_path / "vol"), str(same), True)]


# ----------------------------------------------------------------------------- events


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free port (scripts/test.sh installs it)."""
    import shutil
    import subprocess

    from executorkit import free_port, stop_process

    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed; scripts/test.sh installs it (apt)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    import redis

    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        stop_process(process, timeout_s=10)


def test_on_exit_notify_sends_to_a_redis_events_queue(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    monkeypatch.setenv("CRYOFLOW_EVENTS", redis_url)
    op = operations.SingleTaskOperation(
        "queued-", PythonTask("p", flows.fa), root=tmp_path, inline=True,
        on_exit_notify={"queue": "my_queue", "payload": json.dumps({"insert": 1})})
    run = op.execute()
    run.wait(30)
    client = redis.Redis.from_url(redis_url)
    try:
        popped = client.blpop(["my_queue"], timeout=10)
    finally:
        client.close()
    assert popped is not None and json.loads(popped[1]) == {
        "status": "Succeeded", "payload": '{"insert": 1}', "workflow": run.name}
    assert not (tmp_path / "queues").exists()


def test_a_broker_given_to_one_operation_is_read_back_by_read_queue(
        tmp_path: Path, redis_url: str) -> None:
    op = operations.SingleTaskOperation(
        "queued-", BashTask("no", "exit 1"), root=tmp_path, inline=True,
        on_exit_notify={"queue": "done", "broker": redis_url})
    op.execute().wait(30)
    deadline = time.monotonic() + 10
    while not opsupport.read_queue(tmp_path, "done", redis_url):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [m["status"] for m in opsupport.read_queue(tmp_path, "done", redis_url)] == ["Failed"]


def test_a_broker_that_is_not_file_or_redis_is_refused() -> None:
    with pytest.raises(ConfigError, match="use 'file:' or redis://HOST:PORT/DB"):
        operations.SingleTaskOperation("x-", PythonTask("p", flows.fa),
                                       on_exit_notify={"queue": "q", "broker": "kafka://k"})


def test_an_unprivileged_task_gets_the_folder_read_only_or_does_not_run(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from cryoflow.pyapi import readonly

    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.fail("this test drops root with setpriv (util-linux); run it as root")
    import tempfile

    outer = Path(tempfile.mkdtemp(dir="/tmp"))  # one that user nobody may enter
    outer.chmod(0o755)
    folder = outer / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    argv = readonly.wrap_command(["touch", str(folder / "x")], [str(folder)])
    done = subprocess.run([*as_nobody, *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    written = (folder / "x").exists()
    shutil.rmtree(outer)
    assert done.returncode != 0 and not written
    assert ("Read-only file system" in done.stderr   # a user namespace made it read-only
            or "run the task in a container instead" in done.stderr), done.stderr
    private = Path(tempfile.mkdtemp()) / "inner"  # a folder nobody may not even reach
    private.mkdir()
    blocked = subprocess.run([*as_nobody, *readonly.wrap_command(["true"], [str(private)])],
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    shutil.rmtree(private.parent)
    assert blocked.returncode == readonly.ERROR_EXIT
    assert f"cannot make {private} read-only for the task" in blocked.stderr


def test_a_container_task_cannot_write_into_a_read_only_claim(
        tmp_path: Path, docker_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_daemon.base_url)
    (tmp_path / "volumes" / "claim").mkdir(parents=True)
    op = operations.DistributedSyncOperation(
        "ro-box-", CustomTask("t", "local/debian-py:bookworm", ["touch", "/opt/shared/x"]),
        root=tmp_path, shared_directory="claim:/opt/shared:ro")
    with pytest.raises(RunFailed, match="Read-only file system"):
        op.execute()
    assert list((tmp_path / "volumes" / "claim").iterdir()) == []


def test_an_unreachable_redis_broker_is_logged_and_the_run_still_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from executorkit import free_port

    broker = f"redis://127.0.0.1:{free_port()}/0"
    op = operations.SingleTaskOperation(
        "lost-", PythonTask("p", flows.fa), root=tmp_path, inline=True,
        on_exit_notify={"queue": "q", "broker": broker})
    with caplog.at_level("ERROR", logger="cryoflow.pyapi.operations"):
        record = op.execute().wait(60)
        deadline = time.monotonic() + 30
        while not any("cannot send to queue q" in r.message for r in caplog.records):
            assert time.monotonic() < deadline, "the failed notice was not logged"
            time.sleep(0.05)
    assert record.status is RunStatus.FINISHED
