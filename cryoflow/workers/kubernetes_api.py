"""The few Kubernetes API calls of the Kubernetes executor, through the ``kubernetes``
client, each failure re-raised as :class:`WorkerError` saying what was being done.

Blocking calls: the executor makes them from its job threads.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryoflow.errors import WorkerError
from cryoflow.workers.kubernetes_manifest import LABEL_PREFIX, MANAGED_BY

WATCH_S = 5
"""Length of one watch request on a Job; the stop flag is checked between them."""
POLL_S = 0.2
"""Between looks at a pod that is not running yet."""
_POD_FAILURES = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
)


@dataclass(frozen=True)
class PodRef:
    name: str
    node: str


@dataclass(frozen=True)
class JobEnd:
    exit_code: int | None
    reason: str | None


class KubernetesApi:
    """The few Kubernetes API calls the executor makes (thread-safe, blocking)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._client = api_client
        self.batch: Any = client.BatchV1Api(api_client)
        self.core: Any = client.CoreV1Api(api_client)

    @classmethod
    def connect(cls, configuration: Any = None) -> KubernetesApi:
        from kubernetes import client, config

        if configuration is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                try:
                    config.load_kube_config(client_configuration=configuration)
                except (config.ConfigException, OSError) as exc:
                    raise WorkerError(
                        "no Kubernetes configuration: not in a cluster and no kubeconfig "
                        f"({exc}); set KUBECONFIG"
                    ) from exc
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self._client.close()

    def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        with _wrapped(f"creating Job {name} in namespace {namespace}"):
            self.batch.create_namespaced_job(namespace, manifest)

    def delete_job(self, namespace: str, name: str, grace_s: float) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.batch.delete_namespaced_job(
                name,
                namespace,
                propagation_policy="Background",
                grace_period_seconds=max(0, round(grace_s)),
            )
        except ApiException as exc:
            if exc.status != 404:
                raise WorkerError(f"cannot delete Kubernetes Job {name}: {exc.reason}") from exc

    def running_jobs(self, namespace: str) -> dict[tuple[str, str], str]:
        """``(workflow label, job key) → Job name`` for our Jobs still running."""
        with _wrapped(f"listing Jobs in namespace {namespace}"):
            jobs = self.batch.list_namespaced_job(
                namespace, label_selector=f"{MANAGED_BY}=cryoflow"
            ).items
        found = {}
        for item in jobs:
            status = item.status
            if status is not None and (status.succeeded or status.failed):
                continue
            labels = item.metadata.labels or {}
            key = (item.metadata.annotations or {}).get(f"{LABEL_PREFIX}job-key")
            if key:
                found[(labels.get(f"{LABEL_PREFIX}workflow", ""), key)] = item.metadata.name
        return found

    def wait_for_pod(
        self, namespace: str, job: str, stop: Callable[[], bool], timeout_s: float
    ) -> PodRef | None:
        """The Job's pod once it runs (or has ended); None when stopped first."""
        deadline = time.monotonic() + timeout_s
        while not stop():
            with _wrapped(f"listing the pods of Job {job}"):
                pods = self.core.list_namespaced_pod(
                    namespace, label_selector=f"job-name={job}"
                ).items
            for pod in pods:
                if pod.status is not None and pod.status.phase in (
                    "Running",
                    "Succeeded",
                    "Failed",
                ):
                    return PodRef(pod.metadata.name, pod.spec.node_name or "")
                _raise_if_stuck(job, pod)
            if time.monotonic() > deadline:
                raise WorkerError(
                    f"the pod of Kubernetes Job {job} did not start within {timeout_s:g}s"
                )
            time.sleep(POLL_S)
        return None

    def follow_log(self, namespace: str, pod: str) -> Iterator[str]:
        """The pod's log lines until its container ends."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        try:
            yield from watch.Watch().stream(
                self.core.read_namespaced_pod_log, pod, namespace, follow=True
            )
        except ApiException as exc:
            if exc.status != 404:  # a deleted pod ends its log
                raise WorkerError(f"cannot follow the log of pod {pod}: {exc.reason}") from exc

    def wait_for_end(self, namespace: str, job: str, pod: str, stop: Callable[[], bool]) -> JobEnd:
        """Watch the Job until it completed, failed or was deleted; the pod's exit code."""
        while not stop():
            if not self._job_exists(namespace, job):
                return JobEnd(None, "deleted")
            for kind, obj in self._job_events(namespace, job):
                if kind == "DELETED":
                    return JobEnd(None, "deleted")
                if _finished(obj):
                    return self._exit_of(namespace, pod)
        return JobEnd(None, "deleted")

    def _job_exists(self, namespace: str, job: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.batch.read_namespaced_job(job, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise WorkerError(f"reading Job {job}: {exc.status} {exc.reason}") from exc
        return True

    def _job_events(self, namespace: str, job: str) -> Iterator[tuple[str, Any]]:
        """A few seconds of the Job's watch events (the current state comes first)."""
        from kubernetes import watch

        with _wrapped(f"watching Job {job}"):
            for event in watch.Watch().stream(
                self.batch.list_namespaced_job,
                namespace,
                field_selector=f"metadata.name={job}",
                timeout_seconds=WATCH_S,
            ):
                yield event["type"], event["object"]

    def _exit_of(self, namespace: str, pod: str) -> JobEnd:
        from kubernetes.client.exceptions import ApiException

        try:
            status = self.core.read_namespaced_pod(pod, namespace).status
        except ApiException:
            return JobEnd(None, None)
        for container in status.container_statuses or []:
            terminated = container.state.terminated if container.state else None
            if terminated is not None:
                return JobEnd(terminated.exit_code, terminated.reason)
        return JobEnd(None, None)


def _finished(job: Any) -> bool:
    for condition in (job.status.conditions or []) if job.status else []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return True
    return False


def _raise_if_stuck(job: str, pod: Any) -> None:
    for container in (pod.status.container_statuses or []) if pod.status else []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason in _POD_FAILURES:
            raise WorkerError(
                f"the pod of Kubernetes Job {job} cannot start: {waiting.reason}: {waiting.message}"
            )


@contextlib.contextmanager
def _wrapped(doing: str) -> Iterator[None]:
    """Re-raise the client's errors as :class:`WorkerError` saying what was done."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise WorkerError(f"{doing}: {exc.status} {exc.reason}") from exc
    except (HTTPError, OSError) as exc:
        raise WorkerError(f"{doing}: {exc}") from exc
