"""The executor contract (cryoflow/workers/base.py), run against every executor.

Local worker processes, inline threads, a real Dask cluster (a ``dask scheduler`` and
two ``dask worker`` processes on loopback), a real dockerd, and Kubernetes Jobs
against the FAKE API server of tests/fake_k8s.py (no real API server can run here).
Adding an executor is adding a case to ``CASES``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from enginekit import graph, node
from executorkit import (  # noqa: F401 - the fixtures
    BASE_IMAGE,
    MODULES,
    Sink,
    dask_cluster_fixture,
    docker_daemon_fixture,
    fake_kubernetes_fixture,
    task,
)

from cryoflow.cli.report import build_report
from cryoflow.graph.model import Graph, Outcome, WorkerClass
from cryoflow.head import Head
from cryoflow.store import Store
from cryoflow.workers.base import Executor

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*dashboard.*:UserWarning"),
]


@dataclass(frozen=True)
class Case:
    """One executor under the contract; ``make`` builds it (not started)."""

    name: str
    make: Callable[[pytest.FixtureRequest], Executor]
    enforces_timeout: bool = True


def _local(request: pytest.FixtureRequest) -> Executor:
    from cryoflow.workers.local import LocalExecutor

    return LocalExecutor(workers=2, admin_workers=1, kill_grace_s=1.0)


def _inline(request: pytest.FixtureRequest) -> Executor:
    from cryoflow.workers.inline import InlineExecutor

    return InlineExecutor()


def _dask(request: pytest.FixtureRequest) -> Executor:
    from cryoflow.workers.dask import DaskExecutor, DaskOptions

    cluster = request.getfixturevalue("dask_cluster")
    return DaskExecutor(DaskOptions(scheduler=cluster.address, kill_grace_s=1.0))


def _docker(request: pytest.FixtureRequest) -> Executor:
    from cryoflow.workers.docker import DockerExecutor, DockerOptions

    daemon = request.getfixturevalue("docker_daemon")
    options = DockerOptions(image=BASE_IMAGE, base_url=daemon.base_url, kill_grace_s=1.0)
    return DockerExecutor(options, slots={WorkerClass.NORMAL: 2, WorkerClass.ADMIN: 1})


def _kubernetes(request: pytest.FixtureRequest) -> Executor:
    from cryoflow.workers.kubernetes import (
        KubernetesExecutor,
        KubernetesOptions,
        configuration_for,
    )

    fake = request.getfixturevalue("fake_kubernetes")
    options = KubernetesOptions(
        image="cryoflow-worker:test", namespace="contract", kill_grace_s=1.0
    )
    return KubernetesExecutor(
        options,
        slots={WorkerClass.NORMAL: 2, WorkerClass.ADMIN: 1},
        configuration=configuration_for(fake.url),
    )


CASES = [
    Case("local", _local),
    Case("inline", _inline, enforces_timeout=False),
    Case("dask", _dask),
    Case("docker", _docker),
    Case("kubernetes", _kubernetes),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def run_with(
    request: pytest.FixtureRequest, case: Case, body: Callable[[Executor, Sink], Awaitable[None]]
) -> None:
    """Start the case's executor, run ``body``, always stop it."""
    executor = case.make(request)

    async def main() -> None:
        sink = Sink()
        await executor.start(sink)
        try:
            await body(executor, sink)
        finally:
            await executor.stop(timeout_s=10.0)

    asyncio.run(main())


def copy_task(tmp_path: Path, job_id: str = "1/Upper#1") -> Any:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "scene.txt").write_text("cold ice")
    return task(
        "copy_upper",
        job_id,
        {"src": str(tmp_path / "in" / "scene.txt"), "dst": str(tmp_path / "out")},
        files={"src": {"type": "file"}, "dst": {"type": "dir"}},
    )


def test_a_module_reads_its_input_and_writes_its_output(
    request: pytest.FixtureRequest, case: Case, tmp_path: Path
) -> None:
    async def body(executor: Executor, sink: Sink) -> None:
        executor.submit(copy_task(tmp_path))
        result = await sink.result("1/Upper#1")
        assert result.outcome is Outcome.SUCCESS, result.error
        out = tmp_path / "out" / "scene.txt.upper"
        assert result.retval == {"out": str(out), "chars": 8}
        assert out.read_text() == "COLD ICE"
        assert len(sink.of("started", "1/Upper#1")) == 1
        progress = [value for key, value in sink.of("status", "1/Upper#1") if key == "progress"]
        assert progress in ([10, 100], [100])  # values may be coalesced, never reordered
        assert ("INFO", "read 8 characters from scene.txt") in sink.of("log", "1/Upper#1")
        assert result.stats["runtime"] >= 0

    run_with(request, case, body)


def test_a_failing_module_ends_in_error_with_its_message(
    request: pytest.FixtureRequest, case: Case
) -> None:
    async def body(executor: Executor, sink: Sink) -> None:
        executor.submit(task("fail_loud", "1/Fail#1", {"how": "raise"}))
        result = await sink.result("1/Fail#1")
        assert result.outcome is Outcome.ERROR
        assert (result.error or "").startswith("ValueError: probe failure")
        assert "fail_loud.py" in result.stats.get("traceback", "")

    run_with(request, case, body)


def test_cancel_ends_a_running_job_as_cancelled(request: pytest.FixtureRequest, case: Case) -> None:
    async def body(executor: Executor, sink: Sink) -> None:
        executor.submit(task("sleepy", "1/Sleep#1", {"seconds": 30}))
        await sink.until(lambda: sink.of("status", "1/Sleep#1"))
        executor.cancel("1/Sleep#1", grace_s=2.0)
        result = await sink.result("1/Sleep#1", timeout_s=15)
        assert result.outcome is Outcome.CANCEL
        assert result.retval is None or result.retval["slept"] < 15

    run_with(request, case, body)


def test_a_timeout_stops_a_job_that_ignores_its_cancel(
    request: pytest.FixtureRequest, case: Case
) -> None:
    if not case.enforces_timeout:
        pytest.skip(
            f"the {case.name} executor runs jobs in threads and leaves timeout_s to its caller"
        )

    async def body(executor: Executor, sink: Sink) -> None:
        job = task("sleepy", "1/Slow#1", {"seconds": 5, "ignore_cancel": True}, timeout_s=1.0)
        executor.submit(job)
        result = await sink.result("1/Slow#1", timeout_s=15)
        assert (result.outcome, result.error) == (Outcome.TIMEOUT, "timeout after 1s")
        assert result.stats["runtime"] < 4.5

    run_with(request, case, body)


def test_slots_are_taken_while_a_job_runs_and_given_back_after(
    request: pytest.FixtureRequest, case: Case
) -> None:
    async def body(executor: Executor, sink: Sink) -> None:
        assert executor.capacity()[WorkerClass.NORMAL] >= 1
        before = executor.free_slots()[WorkerClass.NORMAL]
        executor.submit(task("sleepy", "1/Sleep#1", {"seconds": 0.3}))
        assert executor.free_slots()[WorkerClass.NORMAL] == before - 1
        await sink.result("1/Sleep#1")
        await sink.until(lambda: executor.free_slots()[WorkerClass.NORMAL] == before)

    run_with(request, case, body)


def test_every_job_of_a_busy_executor_ends_exactly_once(
    request: pytest.FixtureRequest, case: Case
) -> None:
    async def body(executor: Executor, sink: Sink) -> None:
        submitted = []
        for index in range(6):
            await sink.until(lambda: executor.free_slots()[WorkerClass.NORMAL] > 0)
            job_id = f"{index}/Beat#1"
            executor.submit(task("sleepy", job_id, {"seconds": 0.1}, pebble_id=index))
            submitted.append(job_id)
        await sink.until(lambda: len(sink.ended) == len(submitted))
        assert all(isinstance(sink.ended[j], type(sink.ended[submitted[0]])) for j in submitted)
        assert {sink.ended[j].outcome for j in submitted} == {Outcome.SUCCESS}  # type: ignore[union-attr]

    run_with(request, case, body)


# The same workflow on every executor, with the same report


def copy_workflow() -> Graph:
    upper = node(
        "Upper",
        ("In",),
        module="copy_upper",
        module_ref=str(MODULES / "copy_upper.py"),
        args={
            "src": {"output": "In.src", "type": "file"},
            "dst": {"output": "In.dst", "type": "dir"},
        },
    )
    return graph(node("In", module="cmdline"), upper)


def test_the_example_workflow_gives_the_same_report_on_every_executor(
    request: pytest.FixtureRequest, case: Case, tmp_path: Path
) -> None:
    g = copy_workflow()
    items = []
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"scene {name}")
        items.append({"src": str(tmp_path / name), "dst": str(tmp_path / "out")})

    async def main() -> dict[str, Any]:
        store = Store.open(tmp_path / "state", workflow=g.name)
        head = Head(g, store=store, executor=case.make(request))
        await head.start()
        for item in items:
            await head.offer("In", item)
        await asyncio.wait_for(head.wait_idle(), 60)
        await head.stop()
        report = build_report(store, g)
        store.close()
        return report

    report = asyncio.run(main())
    out = str(tmp_path / "out")
    assert report == {
        "workflow": "t",
        "outcome": "completed",
        "pebbles": [
            {
                "id": index + 1,
                "outcome": "completed",
                "input": item,
                "nodes": {
                    "In": {"outcome": "success", "output": item, "error": None, "attempts": 0},
                    "Upper": {
                        "outcome": "success",
                        "error": None,
                        "attempts": 1,
                        "output": {"out": f"{out}/{name}.upper", "chars": 11},
                    },
                },
            }
            for index, (item, name) in enumerate(zip(items, ("a.txt", "b.txt")))
        ],
    }
    assert (tmp_path / "out" / "b.txt.upper").read_text() == "SCENE B.TXT"


# The registry: names to executors, imported when asked for


def test_an_executor_is_found_by_name_and_built_from_run_settings() -> None:
    from cryoflow.daemon.root import build_executor
    from cryoflow.daemon.settings import RunSettings
    from cryoflow.workers import registry
    from cryoflow.workers.dask import DaskExecutor
    from cryoflow.workers.docker import DockerExecutor
    from cryoflow.workers.inline import InlineExecutor
    from cryoflow.workers.kubernetes import KubernetesExecutor

    assert registry.load("dask") is DaskExecutor
    settings = RunSettings(executor="dask", scheduler="tcp://10.0.0.1:8786", workers=3)
    assert isinstance(build_executor(settings), DaskExecutor)
    docker = build_executor(RunSettings(
        executor="docker", workers=2, config={"docker": {"image": "img:1", "network": "host"}}))
    assert isinstance(docker, DockerExecutor)
    assert docker.capacity()[WorkerClass.NORMAL] == 2
    kube = build_executor(
        RunSettings(kubernetes=True, config={"kubernetes": {"namespace": "jobs"}})
    )
    assert isinstance(kube, KubernetesExecutor)
    inline = build_executor(RunSettings(executor="inline", workers=3))
    assert isinstance(inline, InlineExecutor)
    assert inline.capacity()[WorkerClass.NORMAL] == 3


def test_a_missing_extra_fails_with_the_line_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from cryoflow.errors import WorkerError
    from cryoflow.workers import registry

    monkeypatch.delitem(sys.modules, "cryoflow.workers.dask", raising=False)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(WorkerError) as caught:
        registry.load("dask")
    assert str(caught.value) == (
        "the dask executor needs the 'distributed' package: pip install 'cryoflow[dask]'"
    )


def test_unknown_executors_and_settings_are_refused_with_a_sentence() -> None:
    from cryoflow.daemon.root import build_executor
    from cryoflow.daemon.settings import RunSettings
    from cryoflow.errors import WorkerError
    from cryoflow.workers import registry

    with pytest.raises(WorkerError, match="unknown executor 'nope'; use one of dask, docker"):
        registry.load("nope")
    with pytest.raises(WorkerError, match="unknown executor 'nope'; use one of dask, docker"):
        build_executor(RunSettings(executor="nope"))
    with pytest.raises(WorkerError, match="unknown docker settings colour in the config"):
        build_executor(RunSettings(executor="docker", config={"docker": {"colour": "red"}}))
