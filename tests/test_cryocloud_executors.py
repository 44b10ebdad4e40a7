"""A graph of CryoCloud-style modules between the built-ins (unzip, archive, copyfiles,
jsonparse, remove, noop) runs on the local executor, with two nodes in Docker
containers, and on a Dask cluster started the way docs/deploy.md says (``dask
scheduler`` plus ``ccnode -a 1``), admin nodes included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from executorkit import (
    DaskCluster,
    DockerDaemon,
    docker_daemon_fixture,  # noqa: F401 - the docker_daemon fixture
)

DATA = Path(__file__).parent / "data" / "cryocloud"
GRAPH = DATA / "migration.json"
MODULES = DATA / "modules"
WORKER_IMAGE = "local/cryoflow-worker:ci"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning"),
]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, str]:
    with zipfile.ZipFile(tmp_path / "scenes.zip", "w") as zf:
        zf.writestr("a.txt", "A")
        zf.writestr("b.txt", "BB")
    (tmp_path / "manifest.json").write_text(json.dumps({"scene": "S1"}))
    (tmp_path / "work").mkdir()
    return {"src": str(tmp_path / "scenes.zip"), "work": str(tmp_path / "work"),
            "manifest": str(tmp_path / "manifest.json")}


def ccworkflow(graph: Path, tmp_path: Path, inputs: dict[str, str], *flags: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = [f"--{k}={v}" for k, v in inputs.items()]
    return subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.workflow", str(graph), "--modules", str(MODULES),
         "--no-http", "--state", str(tmp_path / "state"), "--report",
         str(tmp_path / "report.json"), *args, *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=200,
        env={**os.environ, **(env or {})})


def outputs(tmp_path: Path) -> dict[str, Any]:
    [pebble] = json.loads((tmp_path / "report.json").read_text())["pebbles"]
    failed = {k: v["error"] for k, v in pebble["nodes"].items() if v["outcome"] != "success"}
    assert not failed, failed
    return {name: node["output"] for name, node in pebble["nodes"].items()}


def assert_the_migration_ran(out: dict[str, Any], work: str) -> None:
    unpacked = out["Unpack"]["destDir"]
    assert Path(unpacked).parent == Path(work)
    assert out["Count"]["counted"] == 2 and out["Count"]["had_label"] is True
    assert [Path(f).name for f in out["Prep"]["fileList"]] == ["a.txt", "b.txt"]
    assert out["Prep"]["size"] == 3
    assert out["Copy"]["dst"] == [os.path.join(work, "a.txt"), os.path.join(work, "b.txt")]
    assert out["Parse"]["content"] == {"scene": "S1"} == out["Done"]["ignored"]
    assert out["Clean"]["deleted"] == 1 and not Path(unpacked).exists()


def test_the_migration_graph_runs_on_the_local_executor(tmp_path: Path,
                                                        inputs: dict[str, str]) -> None:
    done = ccworkflow(GRAPH, tmp_path, inputs)
    assert done.returncode == 0, done.stderr
    assert_the_migration_ran(outputs(tmp_path), inputs["work"])


def test_cryocloud_style_modules_run_in_docker_containers(
        docker_daemon: DockerDaemon, tmp_path: Path, inputs: dict[str, str]) -> None:
    graph = json.loads(GRAPH.read_text())
    for node in graph["workflow"]["nodes"]:
        if node["name"] in ("Count", "Prep"):
            node["docker"] = WORKER_IMAGE
    in_docker = tmp_path / "in_docker.json"
    in_docker.write_text(json.dumps(graph))
    done = ccworkflow(in_docker, tmp_path, inputs, env={"DOCKER_HOST": docker_daemon.base_url})
    assert done.returncode == 0, done.stderr
    out = outputs(tmp_path)
    assert_the_migration_ran(out, inputs["work"])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """``dask scheduler`` on loopback; the test adds its ``ccnode`` workers."""
    started = DaskCluster(tmp_path / "dask")
    started.folder.mkdir()
    started.start_scheduler()
    try:
        yield started
    finally:
        started.stop()


def test_the_dask_recipe_runs_a_graph_with_admin_nodes(
        cluster: DaskCluster, tmp_path: Path, inputs: dict[str, str]) -> None:
    cluster.start_ccnode("node-1", "-n", "1", "-a", "1")
    cluster.wait_workers(1)
    done = ccworkflow(GRAPH, tmp_path, inputs, "--executor", "dask", "--scheduler",
                      cluster.address)
    assert done.returncode == 0, done.stderr + cluster.logs()
    assert_the_migration_ran(outputs(tmp_path), inputs["work"])


def test_dask_without_admin_workers_says_which_ccnode_to_start(
        cluster: DaskCluster, tmp_path: Path, inputs: dict[str, str]) -> None:
    cluster.start_ccnode("node-1", "-n", "1", "-a", "0")
    cluster.wait_workers(1)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"dask": {"workers_timeout_s": 2}}))
    done = ccworkflow(GRAPH, tmp_path, inputs, "--executor", "dask", "--scheduler",
                      cluster.address, "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert (f"nodes Pack, Clean need admin workers but the Dask cluster at {cluster.address} "
            f"has none after 2 s; start one with ccnode --scheduler {cluster.address} -a 1"
            ) in done.stderr
