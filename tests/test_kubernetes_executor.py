"""The Kubernetes executor with the real ``kubernetes`` client against the FAKE API
server of tests/fake_k8s.py, and its Job manifests against the ``batch/v1`` schema.

No real Kubernetes API server can run on these machines: what is tested here is the
executor's use of the client, the REST paths and response shapes it depends on, and
the manifests it generates; not a real cluster's scheduling or kubelet.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from executorkit import Sink, task
from fake_k8s import (
    JOB_SCHEMA,
    FakeCluster,
    FakeKubernetes,
    job_schema_from_client_models,
    job_validator,
)

from cryoflow.errors import CryoflowError, WorkerError
from cryoflow.graph.model import Outcome, WorkerClass, frozen_map
from cryoflow.workers.base import Task
from cryoflow.workers.kubernetes import KubernetesExecutor, configuration_for
from cryoflow.workers.kubernetes_manifest import (
    KubernetesOptions,
    job_manifest,
    job_name,
    label_value,
)

pytestmark = pytest.mark.timeout(60)

IMAGE = "registry.example/cryoflow-worker:1"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    server = FakeKubernetes(FakeCluster(validate=job_validator())).start()
    try:
        yield server
    finally:
        server.stop()


def executor_for(fake: FakeKubernetes, **options: Any) -> KubernetesExecutor:
    options.setdefault("image", IMAGE)
    options.setdefault("namespace", "cryo")
    options.setdefault("kill_grace_s", 1.0)
    return KubernetesExecutor(
        KubernetesOptions(**options), configuration=configuration_for(fake.url)
    )


def run_kube(
    executor: KubernetesExecutor, body: Callable[[KubernetesExecutor, Sink], Awaitable[None]]
) -> Sink:
    sink = Sink()

    async def main() -> None:
        await executor.start(sink)
        try:
            await body(executor, sink)
        finally:
            await executor.stop()

    asyncio.run(main())
    return sink


# Manifests


MANIFEST_TASKS = {
    "plain": task("copy_upper", "1/Upper#1", {"src": "s3://b/k"}),
    "gpu": task("m", "2/Train/0.3#2", worker_class=WorkerClass.GPU, image="trainer:2"),
    "limits": task(
        "m", "3/Big#1", extra=frozen_map({"resources": {"memory": "512m", "cpus": 2, "gpus": 2}})
    ),
    "pinned-timeout": task("m", "4/Pin#1", ccnode="node-7", timeout_s=30.0),
    "odd-names": task(
        "m",
        "12345678901234567890/" + "N" * 80 + "#7",
        workflow="Ice & Snow: «Svalbard» 2024 / nightly run with a long name",
    ),
}


@pytest.mark.parametrize("name", list(MANIFEST_TASKS))
def test_every_generated_job_manifest_is_a_valid_batch_v1_job(name: str) -> None:
    manifest = job_manifest(MANIFEST_TASKS[name], KubernetesOptions(image=IMAGE))
    assert job_validator()(manifest) == []
    metadata = manifest["metadata"]
    assert DNS_LABEL.match(metadata["name"]) and len(metadata["name"]) <= 63
    assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in metadata["labels"].values())
    spec = manifest["spec"]
    assert (spec["backoffLimit"], spec["template"]["spec"]["restartPolicy"]) == (0, "Never")


def test_the_stored_schema_is_the_one_the_kubernetes_client_models_give() -> None:
    assert json.loads(JOB_SCHEMA.read_text()) == job_schema_from_client_models()


def test_a_manifest_without_a_required_field_is_caught_by_the_schema() -> None:
    manifest = job_manifest(MANIFEST_TASKS["plain"], KubernetesOptions(image=IMAGE))
    del manifest["spec"]["template"]["spec"]["containers"][0]["name"]
    manifest["spec"]["backofLimit"] = 0
    problems = job_validator()(manifest)
    assert any("'name' is a required property" in p for p in problems), problems
    assert any("backofLimit" in p for p in problems), problems


def test_a_job_carries_labels_resources_a_gpu_and_the_task() -> None:
    job = MANIFEST_TASKS["limits"]
    manifest = job_manifest(job, KubernetesOptions(image=IMAGE, namespace="cryo", ttl_s=60))
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "cryoflow",
        "cryoflow.io/workflow": "contract",
        "cryoflow.io/node": "Node",
        "cryoflow.io/pebble": "1",
    }
    assert manifest["metadata"]["annotations"]["cryoflow.io/job-key"] == "3/Big"
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 60
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "512Mi", "nvidia.com/gpu": "2"},
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["CRYOFLOW_TASK"])["id"] == "3/Big#1"
    assert container["command"] == ["python3", "-m", "cryoflow.workers.container"]
    gpu = job_manifest(MANIFEST_TASKS["gpu"], KubernetesOptions())
    assert gpu["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "1"}
    }
    pinned = job_manifest(MANIFEST_TASKS["pinned-timeout"], KubernetesOptions(image=IMAGE))
    assert pinned["spec"]["template"]["spec"]["nodeSelector"] == {
        "kubernetes.io/hostname": "node-7"
    }
    assert pinned["spec"]["activeDeadlineSeconds"] == 92


def test_names_and_labels_stay_valid_and_distinct() -> None:
    assert job_name(task("m", "1/A#1")) != job_name(task("m", "1/A#2"))
    assert job_name(task("m", "1/A#1")) != job_name(task("m", "1/A#1", workflow="other"))
    assert label_value("--Ice & Snow--") == "Ice-Snow"
    assert label_value("«»") == ""


def test_a_node_without_an_image_is_refused_with_a_sentence() -> None:
    with pytest.raises(CryoflowError, match="node Node has no image"):
        job_manifest(task("m", "1/A#1"), KubernetesOptions())


# The executor against the fake API


def test_a_job_runs_as_a_kubernetes_job_and_streams_its_log(
    fake: FakeKubernetes, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("sea ice")
    job = task(
        "copy_upper",
        "1/Upper#1",
        {"src": str(tmp_path / "in.txt"), "dst": str(tmp_path)},
        files={"src": {"type": "file"}, "dst": {"type": "dir"}},
    )

    async def body(executor: KubernetesExecutor, sink: Sink) -> None:
        executor.submit(job)
        result = await sink.result("1/Upper#1")
        assert result.outcome is Outcome.SUCCESS, result.error
        assert result.retval == {"out": str(tmp_path / "in.txt.upper"), "chars": 7}
        assert ("INFO", "read 7 characters from in.txt") in sink.of("log", "1/Upper#1")
        [(pod, node)] = sink.of("started", "1/Upper#1")
        assert (pod.startswith(job_name(job)), node) == (True, "fake-node")
        assert (result.stats["worker"], result.stats["node"]) == (pod, "fake-node")

    run_kube(executor_for(fake), body)
    [created] = fake.cluster.created
    assert created["metadata"]["namespace"] == "cryo"
    assert ("POST", "/apis/batch/v1/namespaces/cryo/jobs") in fake.cluster.requests


def test_cancel_deletes_the_kubernetes_job(fake: FakeKubernetes) -> None:
    async def body(executor: KubernetesExecutor, sink: Sink) -> None:
        executor.submit(task("sleepy", "1/Sleep#1", {"seconds": 30}))
        await sink.until(lambda: sink.of("status", "1/Sleep#1"))
        executor.cancel("1/Sleep#1", grace_s=1.0)
        result = await sink.result("1/Sleep#1")
        assert result.outcome is Outcome.CANCEL

    run_kube(executor_for(fake), body)
    assert any(method == "DELETE" for method, _ in fake.cluster.requests)
    assert fake.cluster.jobs == {}


def test_a_failing_pod_reports_its_exit_code_and_last_log_lines(fake: FakeKubernetes) -> None:
    async def body(executor: KubernetesExecutor, sink: Sink) -> None:
        executor.submit(task("fail_loud", "1/Crash#1", {"how": "exit"}))
        result = await sink.result("1/Crash#1")
        assert (result.outcome, result.error) == (
            Outcome.ERROR,
            "container exited with code 3; last log lines: something went wrong inside",
        )
        assert result.stats["exit_code"] == 3

    run_kube(executor_for(fake), body)


def test_a_pod_that_cannot_start_fails_its_job_and_the_job_is_deleted(fake: FakeKubernetes) -> None:
    async def body(executor: KubernetesExecutor, sink: Sink) -> None:
        executor.submit(task("sleepy", "1/Pull#1", image="missing/worker:0"))
        result = await sink.result("1/Pull#1")
        assert result.outcome is Outcome.ERROR
        assert result.error is not None and "cannot start: ErrImagePull" in result.error

    run_kube(executor_for(fake), body)
    assert fake.cluster.jobs == {}


def test_a_new_head_reattaches_to_a_job_that_is_still_running(fake: FakeKubernetes) -> None:
    first = task("sleepy", "5/Sleep#1", {"seconds": 1.5})
    retry = Task(**{**first.__dict__, "id": "5/Sleep#2"})

    async def leave_it_running(executor: KubernetesExecutor, sink: Sink) -> None:
        executor.submit(first)
        await sink.until(lambda: sink.of("status", "5/Sleep#1"))

    gone = run_kube(executor_for(fake), leave_it_running)
    assert isinstance(gone.ended["5/Sleep#1"], str)  # reported lost when the head stopped

    async def pick_it_up(executor: KubernetesExecutor, sink: Sink) -> None:
        executor.submit(retry)
        result = await sink.result("5/Sleep#2")
        assert result.outcome is Outcome.SUCCESS, result.error

    run_kube(executor_for(fake), pick_it_up)
    assert len(fake.cluster.created) == 1


def test_an_unreachable_api_server_fails_start_with_a_sentence() -> None:
    executor = KubernetesExecutor(
        KubernetesOptions(image=IMAGE), configuration=configuration_for("http://127.0.0.1:9")
    )
    with pytest.raises(WorkerError, match="listing Jobs in namespace default"):
        asyncio.run(executor.start(Sink()))


# environments/k8s


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    import yaml

    folder = Path(__file__).resolve().parents[1] / "environments" / "k8s"
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_the_head_may_only_run_jobs_and_read_their_pods_in_its_namespace() -> None:
    objects = k8s_objects()
    role = objects[("Role", "cryoflow-jobs")]
    assert role["metadata"]["namespace"] == "cryoflow"
    assert {(tuple(r["apiGroups"]), tuple(r["resources"])) for r in role["rules"]} == {
        (("batch",), ("jobs",)),
        (("",), ("pods",)),
        (("",), ("pods/log",)),
    }
    assert not any(kind == "ClusterRole" for kind, _ in objects)
    binding = objects[("RoleBinding", "cryoflow-head-jobs")]
    assert binding["subjects"][0]["name"] == "cryoflow-head"


def test_the_head_runs_once_with_its_state_on_a_volume_claim() -> None:
    objects = k8s_objects()
    head = objects[("Deployment", "cryoflow-head")]["spec"]
    assert (head["replicas"], head["strategy"]["type"]) == (1, "Recreate")
    pod = head["template"]["spec"]
    assert pod["serviceAccountName"] == "cryoflow-head"
    assert "--kubernetes" in pod["containers"][0]["args"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["cryoflow-state"] and ("PersistentVolumeClaim", "cryoflow-state") in objects
    assert ("Service", "cryoflow-head") in objects
    workers = objects[("Deployment", "cryoflow-dask-worker")]["spec"]["template"]["spec"]
    assert "cryoflow.cli.node" in workers["containers"][0]["command"][-1]
    assert ("Service", "cryoflow-dask-scheduler") in objects
