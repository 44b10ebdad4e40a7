"""Jobs as Kubernetes Jobs (``batch/v1``), through the ``kubernetes`` client.

:class:`KubernetesExecutor` turns each job into one Kubernetes Job of the node's
``image`` (or the executor's default image) in a configurable namespace
(:func:`~.kubernetes_manifest.job_manifest`, a pure function): labelled with
workflow, node and pebble, resource requests and limits and a GPU from the node's
``extra["resources"]`` and worker class, ``backoffLimit: 0`` (cryoflow owns retries),
``ttlSecondsAfterFinished``, ``restartPolicy: Never``, the task as JSON in the
``CRYOFLOW_TASK`` variable and ``python3 -m cryoflow.workers.container`` as the command.
``ccnode: HOST`` becomes a ``nodeSelector`` on ``kubernetes.io/hostname``.

The head follows the pod's log for the line protocol (:mod:`.lineproto`) and watches
the Job's status for the outcome; the container's exit code and ``OOMKilled`` come
from the pod. Cancel and timeout delete the Job (its pod gets SIGTERM, then SIGKILL
after ``terminationGracePeriodSeconds``). On start the executor lists the Jobs it
left running before (label ``app.kubernetes.io/managed-by=cryoflow``); when the head
retries such a job after its own restart, the executor re-attaches to the running
Job instead of starting another.

Connection: a given ``kubernetes.client.Configuration``, else the in-cluster
configuration, else the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``); the API
calls are in :mod:`.kubernetes_api`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryoflow.errors import CryoflowError, WorkerError
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.kubernetes_api import KubernetesApi
from cryoflow.workers.kubernetes_manifest import (
    KubernetesOptions,
    job_key,
    job_manifest,
    job_name,
    label_value,
)
from cryoflow.workers.lineproto import ProtocolReader, with_times

__all__ = ["KubernetesExecutor", "KubernetesOptions", "configuration_for", "job_manifest"]


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
        self._api = await asyncio.to_thread(KubernetesApi.connect, self._configuration)
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
    """A stopped job ends ``cancel`` or ``timeout`` however its pod ended."""
    if job.stop_reason is Outcome.TIMEOUT:
        return replace(
            result, outcome=Outcome.TIMEOUT, error=f"timeout after {job.task.timeout_s:g}s"
        )
    if job.stop_reason is Outcome.CANCEL:
        return replace(
            result,
            outcome=Outcome.CANCEL,
            error=f"cancelled; Kubernetes Job {job.name} deleted",
        )
    return result


def _job_error(job: _KubeJob, exc: Exception) -> str:
    if isinstance(exc, CryoflowError):
        return str(exc)
    return (
        f"Kubernetes could not run job {job.task.id} of node {job.task.node} "
        f"(Job {job.name}): {type(exc).__name__}: {exc}"
    )


def configuration_for(host: str, *, token: str | None = None) -> Any:
    """A client configuration for an API server at ``host`` (tests, proxies)."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = host
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    return configuration
