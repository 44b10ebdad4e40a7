"""Jobs as Kubernetes Jobs (``batch/v1``), through the ``kubernetes`` client.

:class:`KubernetesExecutor` turns each job into one Kubernetes Job of the node's
``image`` (or the executor's default image) in a configurable namespace
(:func:`job_manifest`, a pure function): labelled with workflow, node and pebble,
resource requests and limits and a GPU from the node's ``extra["resources"]`` and
worker class, ``backoffLimit: 0`` (cryoflow owns retries), ``ttlSecondsAfterFinished``,
``restartPolicy: Never``, the task as JSON in the ``CRYOFLOW_TASK`` variable and
``python3 -m cryoflow.container`` as the command. ``ccnode: HOST`` becomes a
``nodeSelector`` on ``kubernetes.io/hostname``.

The head follows the pod's log for the line protocol (:mod:`.lineproto`) and watches
the Job's status for the outcome; the container's exit code and ``OOMKilled`` come
from the pod. Cancel and timeout delete the Job (its pod gets SIGTERM, then SIGKILL
after ``terminationGracePeriodSeconds``). On start the executor lists the Jobs it
left running before (label ``app.kubernetes.io/managed-by=cryoflow``); when the head
retries such a job after its own restart, the executor re-attaches to the running
Job instead of starting another.

Connection: a given ``kubernetes.client.Configuration``, else the in-cluster
configuration, else the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryoflow.errors import CryoflowError, WorkerError
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.lineproto import ProtocolReader, task_to_json, with_times

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PREFIX = "cryoflow.io/"
RUNNER_COMMAND = ("python3", "-m", "cryoflow.container")
WATCH_S = 5
"""Length of one watch request on a Job; the stop flag is checked between them."""
POLL_S = 0.2
"""Between looks at a pod that is not running yet."""
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")
_POD_FAILURES = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
)


@dataclass(frozen=True, kw_only=True)
class KubernetesOptions:
    """How :class:`KubernetesExecutor` makes Jobs. Units are in the names."""

    namespace: str = "default"
    image: str | None = None
    """Image for nodes without ``image``; None: such a job fails and says so."""
    ttl_s: int = 600
    """``ttlSecondsAfterFinished``: how long a finished Job is kept."""
    kill_grace_s: float = 2.0
    command: tuple[str, ...] = RUNNER_COMMAND
    service_account: str | None = None
    image_pull_policy: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    env: Mapping[str, str] = field(default_factory=dict)
    pod_start_timeout_s: float = 600.0
    """A pod not running after this long fails its job (its Job is deleted)."""


# The manifest (pure)


def job_manifest(task: Task, options: KubernetesOptions) -> dict[str, Any]:
    """The ``batch/v1`` Job for ``task``; :class:`CryoflowError` without an image."""
    image = task.image or options.image
    if not image:
        raise CryoflowError(
            f"node {task.node} has no image; set 'image' on the node or give the "
            "Kubernetes executor a default image"
        )
    labels = job_labels(task)
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": options.ttl_s,
        "template": {"metadata": {"labels": labels}, "spec": _pod_spec(task, image, options)},
    }
    if task.timeout_s is not None:  # a safety net; the head deletes the Job on time
        spec["activeDeadlineSeconds"] = int(task.timeout_s + options.kill_grace_s) + 60
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(task),
            "namespace": options.namespace,
            "labels": labels,
            "annotations": {
                f"{LABEL_PREFIX}job-id": task.id,
                f"{LABEL_PREFIX}job-key": job_key(task.id),
                f"{LABEL_PREFIX}workflow": task.workflow,
            },
        },
        "spec": spec,
    }


def _pod_spec(task: Task, image: str, options: KubernetesOptions) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "job",
        "image": image,
        "command": list(options.command),
        "env": _env(task, options),
    }
    resources = _resources(task, options)
    if resources:
        container["resources"] = resources
    if options.image_pull_policy:
        container["imagePullPolicy"] = options.image_pull_policy
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": max(1, round(options.kill_grace_s)),
        "containers": [container],
    }
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if task.ccnode and task.ccnode != "all":
        pod["nodeSelector"] = {"kubernetes.io/hostname": task.ccnode}
    return pod


def _env(task: Task, options: KubernetesOptions) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "CRYOFLOW_TASK", "value": task_to_json(task)},
        {"name": "CRYOFLOW_JOB_ID", "value": task.id},
        {"name": "CRYOFLOW_WORKER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "CRYOFLOW_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    return env + [{"name": k, "value": str(v)} for k, v in sorted(options.env.items())]


def _resources(task: Task, options: KubernetesOptions) -> dict[str, dict[str, str]]:
    wanted = task.extra.get("resources") or {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if wanted.get("cpus") is not None:
        requests["cpu"] = limits["cpu"] = str(wanted["cpus"])
    if wanted.get("memory") is not None:
        requests["memory"] = limits["memory"] = _quantity(wanted["memory"])
    gpus = wanted.get("gpus", 1 if task.worker_class is WorkerClass.GPU else 0)
    if gpus:
        limits[options.gpu_resource] = str(int(gpus))
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _quantity(memory: Any) -> str:
    """Docker-style sizes (``512m``, ``2g``) as Kubernetes quantities (``512Mi``)."""
    text = str(memory).strip()
    match = re.fullmatch(r"(\d+)([kmgt])b?", text, re.IGNORECASE)
    if match:
        return f"{match.group(1)}{match.group(2).upper()}i"
    return text


def job_name(task: Task) -> str:
    """A DNS-1123 name, unique per job attempt: ``cf-12-wind-3-1-0a1b2c3d``."""
    digest = hashlib.sha1(f"{task.workflow}\0{task.id}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9-]+", "-", task.id.lower()).strip("-")[:40].strip("-")
    return f"cf-{slug}-{digest}" if slug else f"cf-{digest}"


def job_key(job_id: str) -> str:
    """The job id without its attempt: ``12/Wind/3#2`` → ``12/Wind/3``."""
    key, hash_mark, attempt = job_id.rpartition("#")
    return key if hash_mark and attempt.isdigit() else job_id


def label_value(text: str) -> str:
    """``text`` made a valid label value (63 characters, alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE.sub("-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def job_labels(task: Task) -> dict[str, str]:
    return {
        MANAGED_BY: "cryoflow",
        f"{LABEL_PREFIX}workflow": label_value(task.workflow),
        f"{LABEL_PREFIX}node": label_value(task.node),
        f"{LABEL_PREFIX}pebble": str(task.pebble_id),
    }


# The executor


@dataclass(eq=False)
class _KubeJob:
    task: Task
    name: str
    adopted: bool = False
    started: float = field(default_factory=time.time)
    stop_reason: Outcome | None = None
    timer: asyncio.TimerHandle | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class KubernetesExecutor:
    """Runs every job as a Kubernetes Job (see the module docstring).

    ``slots`` caps the Jobs that run at once per worker class (default: 8 ``normal``,
    1 ``admin``, no ``gpu``); the cluster's own scheduler places them.
    """

    def __init__(
        self,
        options: KubernetesOptions | None = None,
        *,
        slots: Mapping[WorkerClass, int] | None = None,
        configuration: Any = None,
    ) -> None:
        self._options = options or KubernetesOptions()
        self._capacity = {c: 0 for c in WorkerClass}
        self._capacity.update(slots or {WorkerClass.NORMAL: 8, WorkerClass.ADMIN: 1})
        self._configuration = configuration
        self._busy = {c: 0 for c in WorkerClass}
        self._jobs: dict[str, _KubeJob] = {}
        self._orphans: dict[tuple[str, str], str] = {}
        self._api: Any = None
        self._sink: JobSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_up = False
        self._stopping = False

    # Executor interface

    async def start(self, sink: JobSink) -> None:
        """Connect and find the Jobs a previous head left running."""
        self._sink, self._loop = sink, asyncio.get_running_loop()
        self._api = await asyncio.to_thread(_Api.connect, self._configuration)
        self._orphans = await asyncio.to_thread(self._api.running_jobs, self._options.namespace)
        self._started_up = True

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop following: running jobs are reported lost, their Jobs left to run.

        A new head re-attaches to them. The threads that follow them are daemon
        threads and end with their pods' logs.
        """
        self._stopping = True
        for job in list(self._jobs.values()):
            self._finish(job, JobResult(Outcome.CANCEL))
        if self._api is not None:
            self._api.close()

    def capacity(self) -> Mapping[WorkerClass, int]:
        return dict(self._capacity)

    def free_slots(self) -> Mapping[WorkerClass, int]:
        return {c: self._capacity[c] - self._busy[c] for c in WorkerClass}

    def submit(self, task: Task) -> None:
        if not self._started_up or self.free_slots()[task.worker_class] <= 0:
            raise ValueError(f"no free {task.worker_class.value} slot for job {task.id}")
        if task.id in self._jobs:
            raise ValueError(f"job {task.id} is already running")
        orphan = self._orphans.pop((label_value(task.workflow), job_key(task.id)), None)
        job = _KubeJob(task, orphan or job_name(task), adopted=orphan is not None)
        self._jobs[task.id] = job
        self._busy[task.worker_class] += 1
        if task.timeout_s is not None:
            assert self._loop is not None
            job.timer = self._loop.call_later(
                task.timeout_s, self._delete, job, Outcome.TIMEOUT, self._options.kill_grace_s
            )
        _spawn(f"cryoflow-kube-{job.name}", self._run_job, job)

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        """Delete the job's Kubernetes Job; its pod gets ``grace_s`` to stop."""
        job = self._jobs.get(job_id)
        if job is not None:
            self._delete(job, Outcome.CANCEL, grace_s)

    def _delete(self, job: _KubeJob, reason: Outcome, grace_s: float) -> None:
        with job.lock:
            if job.stop_reason is not None:
                return
            job.stop_reason = reason
        _spawn(
            f"cryoflow-kube-delete-{job.name}",
            self._api.delete_job,
            self._options.namespace,
            job.name,
            grace_s,
        )

    # One job (a job thread)

    def _run_job(self, job: _KubeJob) -> None:
        try:
            result = self._run(job)
        except Exception as exc:  # every failure of a job ends in its result
            result = JobResult(Outcome.ERROR, error=_job_error(job, exc))
            self._delete_quietly(job)
        self._report(self._finish, job, result)

    def _delete_quietly(self, job: _KubeJob) -> None:
        """A failed job's Job is not left behind (its pod may be stuck pending)."""
        try:
            self._api.delete_job(self._options.namespace, job.name, 0)
        except WorkerError:
            pass

    def _run(self, job: _KubeJob) -> JobResult:
        namespace = self._options.namespace
        if not job.adopted:
            self._api.create_job(namespace, job_manifest(job.task, self._options))
        pod = self._api.wait_for_pod(
            namespace, job.name, self._should_stop(job), self._options.pod_start_timeout_s
        )
        if pod is None:
            return JobResult(Outcome.CANCEL, error="stopped before its pod ran")
        self._report(self._started, job, pod.name, pod.node)
        reader = ProtocolReader(
            lambda key, value: self._report(self._status, job, key, value),
            lambda level, message: self._report(self._log, job, level, message),
            tail_label="last log lines",
        )
        for line in self._api.follow_log(namespace, pod.name):
            reader.read_line(line)
        ended = self._api.wait_for_end(namespace, job.name, pod.name, self._should_stop(job))
        result = reader.result(ended.exit_code, oom_killed=ended.reason == "OOMKilled")
        stats = {
            "worker": pod.name,
            "node": pod.node,
            "k8s_job": job.name,
            "exit_code": ended.exit_code,
            **result.stats,
        }
        return replace(result, stats=with_times(stats, job.started))

    def _should_stop(self, job: _KubeJob) -> Callable[[], bool]:
        return lambda: job.stop_reason is not None or self._stopping

    # Reports (loop thread)

    def _report(self, method: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(method, *args)

    def _current(self, job: _KubeJob) -> bool:
        return self._jobs.get(job.task.id) is job and self._sink is not None

    def _started(self, job: _KubeJob, pod: str, node: str) -> None:
        if self._current(job):
            assert self._sink is not None
            self._sink.job_started(job.task.id, pod, node)

    def _status(self, job: _KubeJob, key: str, value: Any) -> None:
        if self._current(job):
            assert self._sink is not None
            self._sink.job_status(job.task.id, key, value)

    def _log(self, job: _KubeJob, level: str, message: str) -> None:
        if self._current(job):
            assert self._sink is not None
            self._sink.job_log(job.task.id, level, message)

    def _finish(self, job: _KubeJob, result: JobResult) -> None:
        if not self._current(job):
            return
        del self._jobs[job.task.id]
        self._busy[job.task.worker_class] -= 1
        if job.timer is not None:
            job.timer.cancel()
        assert self._sink is not None
        if self._stopping:
            self._sink.job_lost(
                job.task.id,
                f"the head stopped following Kubernetes Job {job.name}; it may still run",
            )
        else:
            self._sink.job_finished(job.task.id, _stopped_result(job, result))


def _spawn(name: str, target: Callable[..., None], *args: Any) -> None:
    """A daemon thread: a log that never ends must not hold the head's exit."""
    threading.Thread(target=target, args=args, name=name, daemon=True).start()


def _stopped_result(job: _KubeJob, result: JobResult) -> JobResult:
    if job.stop_reason is Outcome.TIMEOUT:
        return replace(
            result, outcome=Outcome.TIMEOUT, error=f"timeout after {job.task.timeout_s:g}s"
        )
    if job.stop_reason is Outcome.CANCEL:
        return replace(
            result,
            outcome=Outcome.CANCEL,
            error=result.error or f"cancelled; Kubernetes Job {job.name} deleted",
        )
    return result


def _job_error(job: _KubeJob, exc: Exception) -> str:
    if isinstance(exc, CryoflowError):
        return str(exc)
    return (
        f"Kubernetes could not run job {job.task.id} of node {job.task.node} "
        f"(Job {job.name}): {type(exc).__name__}: {exc}"
    )


# The API calls, each wrapped into cryoflow's errors


@dataclass(frozen=True)
class _Pod:
    name: str
    node: str


@dataclass(frozen=True)
class _Ended:
    exit_code: int | None
    reason: str | None


class _Api:
    """The few Kubernetes API calls the executor makes (thread-safe, blocking)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._client = api_client
        self.batch: Any = client.BatchV1Api(api_client)
        self.core: Any = client.CoreV1Api(api_client)

    @classmethod
    def connect(cls, configuration: Any = None) -> _Api:
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
    ) -> _Pod | None:
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
                    return _Pod(pod.metadata.name, pod.spec.node_name or "")
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

    def wait_for_end(self, namespace: str, job: str, pod: str, stop: Callable[[], bool]) -> _Ended:
        """Watch the Job until it completed, failed or was deleted; the pod's exit code."""
        while not stop():
            if not self._job_exists(namespace, job):
                return _Ended(None, "deleted")
            for kind, obj in self._job_events(namespace, job):
                if kind == "DELETED":
                    return _Ended(None, "deleted")
                if _finished(obj):
                    return self._exit_of(namespace, pod)
        return _Ended(None, "deleted")

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

    def _exit_of(self, namespace: str, pod: str) -> _Ended:
        from kubernetes.client.exceptions import ApiException

        try:
            status = self.core.read_namespaced_pod(pod, namespace).status
        except ApiException:
            return _Ended(None, None)
        for container in status.container_statuses or []:
            terminated = container.state.terminated if container.state else None
            if terminated is not None:
                return _Ended(terminated.exit_code, terminated.reason)
        return _Ended(None, None)


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


def configuration_for(host: str, *, token: str | None = None) -> Any:
    """A client configuration for an API server at ``host`` (tests, proxies)."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = host
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    return configuration
