"""The CloudHarness seed's code runs on cryoflow with only its import line changed.

The snippets are copies from the seed document cloudharness-workflows.md, kept in
tests/data/seeds/ (each file names its section), with the seed's task image
``myapp-mytask`` as ``applications/myapp/tasks/mytask/Dockerfile`` (built on the real
dockerd from ``local/debian-py:bookworm``: nothing can be pulled here).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flows
import pytest
from executorkit import (
    DockerDaemon,
    docker_daemon_fixture,  # noqa: F401 - the docker_daemon fixture
)

from cryoflow.pyapi import operations, opsupport

SEEDS = Path(__file__).parent / "data" / "seeds"
ROOT = Path(".cryoflow") / "operations"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder with the seed's applications, as the current folder."""
    shutil.copytree(SEEDS / "applications", tmp_path / "applications")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def docker_host(docker_daemon: DockerDaemon, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCKER_HOST", docker_daemon.base_url)
    return docker_daemon.base_url


def run_snippet(name: str, replace: tuple[str, str] | None = None) -> dict[str, Any]:
    """Run a seed snippet in this process (as a script); its globals."""
    text = (SEEDS / name).read_text()
    if replace is not None:
        assert text.count(replace[0]) == 1
        text = text.replace(*replace)
    namespace: dict[str, Any] = {"__name__": "__main__", "fa": flows.fa}
    exec(compile(text, name, "exec"), namespace)  # noqa: S102
    return namespace


def import_snippet(name: str, folder: Path) -> Any:
    """Import a snippet as a module, so that worker processes import its functions too."""
    module = f"seed_{name.removesuffix('.py')}"
    shutil.copy(SEEDS / name, folder / f"{module}.py")
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))


def finished_runs(count: int = 1, timeout_s: float = 120) -> list[dict[str, Any]]:
    """The runs in ./.cryoflow/operations once ``count`` of them ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = operations.ResourceQueryOperation("q").execute()
        if len([r for r in runs if r["status"] != "running"]) >= count:
            assert all(not r["errors"] for r in runs), runs
            return runs
        assert time.monotonic() < deadline, f"runs did not end in time: {runs}"
        time.sleep(0.1)


def test_the_parallel_python_snippet_runs_both_functions_at_the_same_time(
        workdir: Path) -> None:
    snippet = import_snippet("cloudharness_parallel.py", workdir)
    started = time.monotonic()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        record = snippet.op.execute().wait(60)
    assert record.status.value == "finished"
    assert record.results == {"p1": None, "p2": None}
    assert {n.dependencies for n in record.nodes.values()} == {()}
    assert time.monotonic() - started < 2 * 2 + 3


def test_a_custom_task_runs_the_default_command_of_the_apps_task_image(
        workdir: Path, docker_host: str) -> None:
    run_snippet("cloudharness_custom_task.py")
    [run] = finished_runs()
    assert run["status"] == "finished"
    assert run["results"]["print-file"]["stdout"].splitlines()[:2] == [
        "hello from myapp-mytask", "env_variable1= env_variable2="]


def test_a_custom_command_runs_in_the_apps_task_image(workdir: Path, docker_host: str) -> None:
    run_snippet("cloudharness_custom_command.py")
    [run] = finished_runs()
    listing = run["results"]["print-file"]["stdout"]
    assert run["status"] == "finished" and "message.txt" in listing and listing.startswith("total")


def test_extra_keywords_reach_the_container_as_environment_variables(
        workdir: Path, docker_host: str) -> None:
    run_snippet("cloudharness_env.py")
    [run] = finished_runs()
    assert run["results"]["print-file"]["stdout"].splitlines()[1] == (
        "env_variable1=my variable env_variable2=1")


def test_a_shared_claim_is_mounted_where_the_seed_says(workdir: Path, docker_host: str) -> None:
    claim = workdir / ROOT / "volumes" / "myclaim"
    claim.mkdir(parents=True)
    (claim / "input.txt").write_text("data")
    run_snippet("cloudharness_shared.py")
    [run] = finished_runs()
    assert "/opt/shared: input.txt" in run["results"]["print-file"]["stdout"]
    assert claim.is_dir()  # an existing claim is kept


def test_several_shared_claims_are_mounted_and_a_new_one_is_removed_after_the_run(
        workdir: Path, docker_host: str) -> None:
    claim = workdir / ROOT / "volumes" / "myclaim"
    claim.mkdir(parents=True)
    (claim / "input.txt").write_text("data")
    run_snippet("cloudharness_shared_list.py")
    [run] = finished_runs()
    lines = run["results"]["print-file"]["stdout"].splitlines()
    assert "/opt/shared: input.txt" in lines and "/opt/shared2: " in lines
    assert not (workdir / ROOT / "volumes" / "myclaim2").exists()


def test_the_pod_context_snippet_runs_and_carries_its_affinity(workdir: Path) -> None:
    snippet = import_snippet("cloudharness_pod_context.py", workdir)
    assert snippet.op.context().pod["labels"] == {"a": "b"}
    assert snippet.op.execute().wait(60).status.value == "finished"


def test_the_seeds_default_ttl_is_the_default(workdir: Path) -> None:
    assert run_snippet("cloudharness_ttl_default.py")["default"] == operations.DEFAULT_TTL


def test_the_ttl_snippet_sets_the_strategy_of_the_run(workdir: Path) -> None:
    op = run_snippet("cloudharness_ttl.py", (
        "ParallelOperation(...,", "ParallelOperation('ttl-op-', [tasks.PythonTask('p', fa)], "
                                  "inline=True,"))["op"]
    record = op.execute().wait(30)
    [run] = operations.ResourceQueryOperation("q", prefix="ttl-op-").execute()
    assert run["expires"] == pytest.approx(record.finished + 60 * 20, abs=1)


def test_the_notify_snippet_sends_the_outcome_to_the_queue(workdir: Path) -> None:
    op = run_snippet("cloudharness_notify.py", (
        "ParallelOperation(...,", "ParallelOperation('notify-op-', [tasks.PythonTask('p', fa)], "
                                  "inline=True,"))["op"]
    run = op.execute()
    run.wait(30)
    deadline = time.monotonic() + 10
    while not opsupport.read_queue(ROOT, "my_queue") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opsupport.read_queue(ROOT, "my_queue") == [
        {"status": "Succeeded", "payload": '{"insert": 1}', "workflow": run.name}]
