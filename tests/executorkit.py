"""Shared pieces of the executor tests: a recording sink, task builders, and the real
servers the executors run against (a Dask scheduler with workers, dockerd), each
started by a fixture, recorded by PID and stopped by PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cryoflow.graph.model import WorkerClass, frozen_map
from cryoflow.workers.base import JobResult, Task

MODULES = Path(__file__).parent / "data" / "executor_modules"
BASE_IMAGE = "local/debian-py:bookworm"
"""Built by .ci/executors.sh: a debootstrap rootfs with python3."""
DOCKER_DIR = Path(os.environ.get("CRYOFLOW_DOCKER_DIR", "/tmp/cryoflow-docker"))
T = TypeVar("T")


class Sink:
    """Collects what an executor reports; lets a test wait for a condition."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.ended: dict[str, JobResult | str] = {}
        self._changed = asyncio.Event()

    def _add(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    def job_started(self, job_id: str, worker: str, host: str) -> None:
        self._add("started", job_id, worker, host)

    def job_status(self, job_id: str, key: str, value: Any) -> None:
        self._add("status", job_id, key, value)

    def job_log(self, job_id: str, level: str, message: str) -> None:
        self._add("log", job_id, level, message)

    def job_finished(self, job_id: str, result: JobResult) -> None:
        assert job_id not in self.ended, f"job {job_id} ended twice"
        self.ended[job_id] = result
        self._add("finished", job_id, result)

    def job_lost(self, job_id: str, reason: str) -> None:
        assert job_id not in self.ended, f"job {job_id} ended twice"
        self.ended[job_id] = reason
        self._add("lost", job_id, reason)

    async def until(self, probe: Callable[[], T | None], timeout_s: float = 20.0) -> T:
        """Wait until ``probe()`` returns something truthy (re-checked on each report)."""
        deadline = time.monotonic() + timeout_s
        while not (found := probe()):
            self._changed.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"condition not met within {timeout_s}s; events: {self.events[-8:]}"
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass
        return found

    async def result(self, job_id: str, timeout_s: float = 30.0) -> JobResult:
        ended = await self.until(lambda: self.ended.get(job_id), timeout_s)
        assert isinstance(ended, JobResult), ended
        return ended

    def of(self, kind: str, job_id: str) -> list[tuple[Any, ...]]:
        return [e[2:] for e in self.events if e[0] == kind and e[1] == job_id]


def task(module: str, job_id: str, args: dict[str, Any] | None = None, **fields: Any) -> Task:
    """A task running one of tests/data/executor_modules."""
    fields.setdefault("workflow", "contract")
    fields.setdefault("node", "Node")
    return Task(
        id=job_id,
        pebble_id=int(fields.pop("pebble_id", 1)),
        module=module,
        module_ref=str(MODULES / f"{module}.py"),
        args=frozen_map(args or {}),
        worker_class=fields.pop("worker_class", WorkerClass.NORMAL),
        **fields,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s}s")
        time.sleep(0.05)
    return found


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it; always reaps."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
    process.wait()


# Dask: a real scheduler and worker processes on loopback


@dataclass
class DaskCluster:
    """``dask scheduler`` plus ``dask worker`` processes, each in its own session."""

    folder: Path
    port: int = field(default_factory=free_port)
    scheduler: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        dask = str(Path(sys.executable).parent / "dask")
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - closed by the child
        with log:
            return subprocess.Popen(
                [dask, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def start_scheduler(self) -> None:
        self.scheduler = self._start(
            "scheduler",
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dashboard-address",
                ":0",
                "--no-show",
            ],
        )

    def start_worker(
        self, name: str, host: str, resources: str = "normal=1,admin=1", nthreads: int = 2
    ) -> None:
        """A worker standing for ``host`` (its ``CRYOFLOW_NODE_NAME``)."""
        self.workers[name] = self._start(
            name,
            [
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                str(nthreads),
                "--resources",
                resources,
                "--name",
                name,
                "--no-dashboard",
            ],
            env={"CRYOFLOW_NODE_NAME": host},
        )

    def wait_workers(self, count: int, timeout_s: float = 60.0) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout_s) as client:
            client.wait_for_workers(count, timeout=timeout_s)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and its nanny at once (no goodbye to the scheduler)."""
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def start_ccnode(self, name: str, *flags: str) -> None:
        """A worker started by ``ccnode --name NAME`` (it rejoins a restarted scheduler)."""
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - closed by the child
        with log:
            self.workers[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cryoflow.cli.node",
                    "--scheduler",
                    self.address,
                    "--host",
                    "127.0.0.1",
                    "--name",
                    name,
                    *flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()
        self.scheduler = None

    def stop(self) -> None:
        for process in list(self.workers.values()):
            stop_process(process)
        self.workers.clear()
        if self.scheduler is not None:
            stop_process(self.scheduler)
            self.scheduler = None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.folder.glob("*.log"))
        )


@pytest.fixture(scope="session", name="dask_cluster")
def dask_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and two workers (hosts ``host-a`` and ``host-b``) for the session."""
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"))
    cluster.start_scheduler()
    cluster.start_worker("w1", "host-a")
    cluster.start_worker("w2", "host-b")
    try:
        cluster.wait_workers(2)
        yield cluster
    finally:
        cluster.stop()


# Docker: a real dockerd


@dataclass
class DockerDaemon:
    base_url: str
    process: subprocess.Popen[bytes] | None = None


def _docker_reachable(base_url: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=base_url, timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def _start_dockerd(base_url: str) -> subprocess.Popen[bytes]:
    """How dockerd runs here: no bridge, no iptables, own folders."""
    for folder in ("data", "exec"):
        (DOCKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    log = open(DOCKER_DIR / "dockerd.log", "ab")  # noqa: SIM115 - closed by the child
    with log:
        process = subprocess.Popen(
            [
                "dockerd",
                "--host",
                base_url,
                "--data-root",
                str(DOCKER_DIR / "data"),
                "--exec-root",
                str(DOCKER_DIR / "exec"),
                "--pidfile",
                str(DOCKER_DIR / "dockerd.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for(lambda: _docker_reachable(base_url) or process.poll() is not None, 30, "dockerd")
    if process.poll() is not None:
        tail = (DOCKER_DIR / "dockerd.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"dockerd exited with code {process.returncode}:\n{tail}")
    return process


@pytest.fixture(scope="session", name="docker_daemon")
def docker_daemon_fixture() -> Iterator[DockerDaemon]:
    """The daemon at DOCKER_HOST (CI starts it), else one started here.

    Fails, never skips, when no daemon can run: the Docker executor is part of the
    contract.
    """
    base_url = os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_DIR}/docker.sock"
    daemon = DockerDaemon(base_url)
    if not _docker_reachable(base_url):
        if not _which("dockerd"):
            pytest.fail("dockerd is not installed; run .ci/executors.sh (apt docker.io)")
        daemon.process = _start_dockerd(base_url)
    try:
        _require_image(base_url, BASE_IMAGE)
        yield daemon
    finally:
        if daemon.process is not None:
            stop_process(daemon.process, timeout_s=15)


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def _require_image(base_url: str, image: str) -> None:
    import docker

    client = docker.DockerClient(base_url=base_url)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {image} is missing; .ci/executors.sh builds it with debootstrap")
    finally:
        client.close()


# Kubernetes: the fake API server (tests/fake_k8s.py); no real one can run here


@pytest.fixture(scope="session", name="fake_kubernetes")
def fake_kubernetes_fixture() -> Iterator[Any]:
    """The FAKE API server; every Job posted to it is checked against the schema."""
    from fake_k8s import FakeCluster, FakeKubernetes, job_validator

    server = FakeKubernetes(FakeCluster(validate=job_validator())).start()
    try:
        yield server
    finally:
        server.stop()
