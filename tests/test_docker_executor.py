"""The Docker executor against a real dockerd (started by CI or by the fixture).

Images are built here, never pulled: ``local/debian-py:bookworm`` (a debootstrap
rootfs with python3, from .ci/executors.sh) and the worker image of
environments/Dockerfile built on it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from executorkit import (
    BASE_IMAGE,
    MODULES,
    DockerDaemon,
    Sink,
    docker_daemon_fixture,  # noqa: F401 - the docker_daemon fixture
    task,
)

from cryoflow.graph.model import Outcome, WorkerClass, frozen_map
from cryoflow.workers.docker import DockerExecutor, DockerOptions
from cryoflow.workers.docker_plan import PACKAGE_ROOT, BindMount, container_spec, plan_mounts

REPO = Path(__file__).resolve().parents[1]
WORKER_IMAGE = "local/cryoflow-worker:test"

pytestmark = pytest.mark.timeout(120)


def run_docker(
    daemon: DockerDaemon, body: Callable[[DockerExecutor, Sink], Awaitable[None]], **options: Any
) -> None:
    options.setdefault("image", BASE_IMAGE)
    executor = DockerExecutor(DockerOptions(base_url=daemon.base_url, kill_grace_s=1.0, **options))

    async def main() -> None:
        sink = Sink()
        await executor.start(sink)
        try:
            await body(executor, sink)
        finally:
            await executor.stop(timeout_s=15)

    asyncio.run(main())


def containers_of(daemon: DockerDaemon, job_id: str) -> list[Any]:
    import docker

    client = docker.DockerClient(base_url=daemon.base_url)
    try:
        return list(client.containers.list(all=True, filters={"label": f"cryoflow.job={job_id}"}))
    finally:
        client.close()


def test_a_job_sees_its_input_read_only_its_output_writable_and_no_network(
    docker_daemon: DockerDaemon, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scene.txt").write_text("frozen")
    args = {"src": str(tmp_path / "in" / "scene.txt"), "dst": str(tmp_path / "out")}

    async def body(executor: DockerExecutor, sink: Sink) -> None:
        executor.submit(
            task(
                "mounts", "1/Look#1", args, files={"src": {"type": "file"}, "dst": {"type": "dir"}}
            )
        )
        result = await sink.result("1/Look#1")
        assert result.outcome is Outcome.SUCCESS, result.error
        assert result.retval == {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "interfaces": ["lo"],
            "input_writable": "OSError",
            "output_folder_writable": True,
            "input": "frozen",
        }

    run_docker(docker_daemon, body)


def test_an_untyped_path_to_a_new_file_gets_its_folder_mounted_writable(
    docker_daemon: DockerDaemon, tmp_path: Path
) -> None:
    (tmp_path / "results").mkdir()
    target = tmp_path / "results" / "r1.txt"

    async def body(executor: DockerExecutor, sink: Sink) -> None:
        executor.submit(task("write_to", "1/Write#1", {"target": str(target), "text": "melt"}))
        result = await sink.result("1/Write#1")
        assert result.outcome is Outcome.SUCCESS, result.error

    run_docker(docker_daemon, body)
    assert target.read_text() == "melt"


def test_cancel_and_timeout_stop_and_remove_the_container(docker_daemon: DockerDaemon) -> None:
    async def body(executor: DockerExecutor, sink: Sink) -> None:
        executor.submit(task("sleepy", "1/Stubborn#1", {"seconds": 60, "ignore_cancel": True}))
        executor.submit(
            task("sleepy", "2/Slow#1", {"seconds": 60, "ignore_cancel": True}, timeout_s=1.0)
        )
        await sink.until(lambda: sink.of("status", "1/Stubborn#1"))
        executor.cancel("1/Stubborn#1", grace_s=1.0)
        cancelled = await sink.result("1/Stubborn#1")
        timed_out = await sink.result("2/Slow#1")
        assert (cancelled.outcome, cancelled.error) == (
            Outcome.CANCEL,
            "cancelled; the container was killed after a grace of 1s",
        )
        assert (timed_out.outcome, timed_out.error) == (Outcome.TIMEOUT, "timeout after 1s")
        assert cancelled.stats["exit_code"] == timed_out.stats["exit_code"] == 137

    run_docker(docker_daemon, body, network="none")
    assert containers_of(docker_daemon, "1/Stubborn#1") == []
    assert containers_of(docker_daemon, "2/Slow#1") == []


def test_a_failing_container_puts_its_stderr_in_the_job_error(docker_daemon: DockerDaemon) -> None:
    async def body(executor: DockerExecutor, sink: Sink) -> None:
        executor.submit(task("fail_loud", "1/Crash#1", {"how": "exit"}))
        result = await sink.result("1/Crash#1")
        assert result.outcome is Outcome.ERROR
        assert result.error == "container exited with code 3; stderr: something went wrong inside"
        assert ("WARNING", "something went wrong inside") in sink.of("log", "1/Crash#1")

    run_docker(docker_daemon, body)


def test_a_container_over_its_memory_limit_is_reported_as_out_of_memory(
    docker_daemon: DockerDaemon,
) -> None:
    async def body(executor: DockerExecutor, sink: Sink) -> None:
        job = task(
            "hog",
            "1/Hog#1",
            {"megabytes": 2048},
            extra=frozen_map({"resources": {"memory": "64m"}}),
        )
        executor.submit(job)
        result = await sink.result("1/Hog#1", timeout_s=60)
        assert result.outcome is Outcome.ERROR
        assert result.error is not None
        assert result.error.startswith("container exited with code 137 (killed: out of memory)")

    run_docker(docker_daemon, body)


def test_a_missing_image_fails_the_job_with_a_sentence(docker_daemon: DockerDaemon) -> None:
    async def body(executor: DockerExecutor, sink: Sink) -> None:
        executor.submit(task("sleepy", "1/Nowhere#1", docker="local/no-such-image:1"))
        result = await sink.result("1/Nowhere#1")
        assert (result.outcome, result.error) == (
            Outcome.ERROR,
            (
                "docker image 'local/no-such-image:1' of node Node is not on the Docker daemon; "
                "build or load it there (job 1/Nowhere#1)"
            ),
        )

    run_docker(docker_daemon, body)


def test_a_task_too_big_for_a_variable_reaches_the_container_as_a_file(
    docker_daemon: DockerDaemon, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("x")
    job = task(
        "copy_upper",
        "1/Big#1",
        {"src": str(tmp_path / "in.txt"), "dst": str(tmp_path), "pad": "p" * 300_000},
        files={"dst": {"type": "dir"}},
    )

    async def body(executor: DockerExecutor, sink: Sink) -> None:
        executor.submit(job)
        result = await sink.result("1/Big#1")
        assert result.outcome is Outcome.SUCCESS, result.error

    run_docker(docker_daemon, body)
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("cryoflow-task-*.json")]
    assert leftovers == []


@pytest.fixture(scope="module")
def worker_image(
    docker_daemon: DockerDaemon,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """environments/Dockerfile built on the local Debian image, without pip."""
    import docker

    context = tmp_path_factory.mktemp("context")
    for name in ("cryoflow",):  # the built-in modules ship inside the package
        shutil.copytree(REPO / name, context / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copy(REPO / "environments" / "Dockerfile", context / "Dockerfile")
    client = docker.DockerClient(base_url=docker_daemon.base_url)
    try:
        client.images.build(
            path=str(context),
            tag=WORKER_IMAGE,
            rm=True,
            buildargs={"BASE": BASE_IMAGE, "EXTRAS": ""},
        )
        yield WORKER_IMAGE
    finally:
        client.close()


def test_the_worker_image_runs_jobs_with_its_own_copy_of_cryoflow(
    docker_daemon: DockerDaemon, worker_image: str, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("glacier")

    async def body(executor: DockerExecutor, sink: Sink) -> None:
        executor.submit(
            task(
                "copy_upper",
                "1/Upper#1",
                {"src": str(tmp_path / "in.txt"), "dst": str(tmp_path)},
                files={"dst": {"type": "dir"}},
                docker=worker_image,
            )
        )
        result = await sink.result("1/Upper#1")
        assert result.outcome is Outcome.SUCCESS, result.error

    run_docker(docker_daemon, body, mount_package=False)
    assert (tmp_path / "in.txt.upper").read_text() == "GLACIER"


# Planning a container (no daemon needed)


def exists_in(*present: str) -> Callable[[str], bool]:
    return lambda path: path in present


def test_typed_paths_are_mounted_by_their_role(tmp_path: Path) -> None:
    job = task(
        "m",
        "1/A#1",
        {"src": "/data/in/a.tar", "raw": "/data/raw.nc", "out": "/data/out", "tmp": str(tmp_path)},
        files={
            "src": {"type": "file", "unzip": True},
            "raw": {"type": "file"},
            "out": {"type": "dir"},
            "tmp": {"type": "tempdir", "id": "t"},
        },
        workflow="wf",
    )
    mounts = plan_mounts(job, package=False, exists=exists_in())
    assert set(mounts) >= {
        BindMount("/data/in", "/data/in", read_only=False),
        BindMount("/data/raw.nc", "/data/raw.nc", read_only=True),
        BindMount("/data/out", "/data/out", read_only=False),
        BindMount(f"{tmp_path}/cryoflow-wf-1-t", f"{tmp_path}/cryoflow-wf-1-t", read_only=False),
        BindMount(str(MODULES), str(MODULES), read_only=True),
    }


def test_untyped_paths_are_read_only_and_a_new_files_folder_is_writable() -> None:
    job = task(
        "m",
        "1/A#1",
        {
            "cfg": "/etc/app.conf",
            "report": "/srv/reports/r1.json",
            "nested": {"list": ["/srv/a", "file:///srv/b"]},
            "words": "not/a/path",
            "root": "/",
            "url": "s3://b/k",
        },
    )
    present = exists_in("/etc/app.conf", "/srv/reports", "/srv/a", "/srv/b", "/")
    mounts = plan_mounts(job, package=False, exists=present)
    assert [m for m in mounts if m.source != str(MODULES)] == [
        BindMount("/etc/app.conf", "/etc/app.conf", True),
        BindMount("/srv/a", "/srv/a", True),
        BindMount("/srv/b", "/srv/b", True),
        BindMount("/srv/reports", "/srv/reports", False),
    ]


def test_a_path_under_a_writable_mount_is_not_mounted_again() -> None:
    job = task(
        "m",
        "1/A#1",
        {"out": "/w", "inside": "/w/x.txt", "deeper": "/w/sub"},
        files={"out": {"type": "dir"}},
        workdir="/w/run",
        post=({"output": "o", "target": "file:///w/published"},),
        volumes=(("/host/cache", "/cache", "ro"),),
    )
    mounts = plan_mounts(job, package=False, exists=exists_in("/w/x.txt", "/w/sub"))
    assert [m for m in mounts if m.source != str(MODULES)] == [
        BindMount("/w", "/w", False),
        BindMount("/host/cache", "/cache", True),
    ]


def test_the_container_spec_carries_user_network_limits_and_gpu() -> None:
    job = task(
        "m",
        "1/A#1",
        worker_class=WorkerClass.GPU,
        docker="img:1",
        extra=frozen_map({"network": "host", "resources": {"memory": "2g", "cpus": 1.5}}),
    )
    spec = container_spec(job, DockerOptions(user="1000:1000"), gpu_device="1", exists=exists_in())
    kwargs = spec.create_kwargs()
    assert (kwargs["image"], kwargs["user"], kwargs["network_mode"]) == (
        "img:1",
        "1000:1000",
        "host",
    )
    assert (kwargs["mem_limit"], kwargs["nano_cpus"]) == ("2g", 1_500_000_000)
    assert kwargs["device_requests"][0]["DeviceIDs"] == ["1"]
    assert kwargs["environment"]["PYTHONPATH"] == str(PACKAGE_ROOT)
    assert kwargs["labels"]["cryoflow.job"] == "1/A#1"
    assert (
        container_spec(
            task("m", "1/B#1"), DockerOptions(image="base"), exists=exists_in()
        ).network_mode
        == "none"
    )


def test_a_node_without_an_image_is_refused_with_a_sentence() -> None:
    from cryoflow.errors import CryoflowError

    with pytest.raises(CryoflowError, match="node Node has no docker image"):
        container_spec(task("m", "1/A#1"), DockerOptions(), exists=exists_in())
