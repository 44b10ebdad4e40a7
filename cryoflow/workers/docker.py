"""Jobs in Docker containers, through the Docker API (the ``docker`` package).

:class:`DockerExecutor` runs each job in a fresh container of the node's ``docker``
image (or the executor's default image) with ``python3 -m cryoflow.workers.container``, the
same job runtime as every other worker, and reads CryoCloud's line protocol from the
container's stdout as it comes (:mod:`.lineproto`); stderr lines are logged at
``WARNING`` and the last ones end up in the error of a failing job.

What the container gets (:func:`~.docker_plan.container_spec`, a pure function):

- every path in the job's resolved args, mounted at the same path
  (:func:`~.docker_plan.plan_mounts`): input files read-only, ``dir``/``tempdir`` folders, the
  folder of an output that does not exist yet, the workdir and local ``post`` targets
  read-write; plus the node's ``volumes``; plus the module's folder and (with
  ``mount_package``, the default) this cryoflow package read-only, so the image needs
  nothing but Python >= 3.11;
- the head's uid:gid (unless ``user`` is set), ``network_mode="none"`` unless the
  node asks for another (``extra["network"]``), memory and CPU limits from the node's
  ``extra["resources"]`` (``{"memory": "2g", "cpus": 1.5}``) or the executor's
  defaults, and a GPU (a device request) for ``gpu`` jobs, one device per GPU slot.

Cancel and timeout stop the container (SIGTERM, which sets the job's cancel event,
then SIGKILL after the grace). A container's exit code is reported as such
(``container exited with code 137 (killed: out of memory)``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryoflow.errors import CryoflowError, WorkerError
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import JobResult, JobSink, Task
from cryoflow.workers.docker_plan import (
    TASK_ENV_MAX_BYTES,
    ContainerSpec,
    DockerOptions,
    container_spec,
    prepare_host_paths,
)
from cryoflow.workers.lineproto import ProtocolReader, task_to_json, with_times

__all__ = ["DockerExecutor", "DockerOptions"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Job:
    task: Task
    gpu_device: str | None = None
    container: Any = None
    started: float = field(default_factory=time.time)
    stop_reason: Outcome | None = None
    """CANCEL or TIMEOUT once the job was asked to stop."""
    grace_s: float = 0.0
    timer: asyncio.TimerHandle | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class DockerExecutor:
    """Runs every job in its own container (see the module docstring).

    ``slots`` gives the containers that may run at once per worker class (default:
    one per CPU for ``normal``, one ``admin``); ``gpus`` adds that many ``gpu`` slots,
    each with its own device.
    """

    def __init__(
        self,
        options: DockerOptions | None = None,
        *,
        slots: Mapping[WorkerClass, int] | None = None,
        gpus: int = 0,
        client: Any = None,
    ) -> None:
        self._options = options or DockerOptions()
        counts = dict(slots or {WorkerClass.NORMAL: os.cpu_count() or 1, WorkerClass.ADMIN: 1})
        counts[WorkerClass.GPU] = gpus or counts.get(WorkerClass.GPU, 0)
        self._capacity = counts
        self._free_gpus = [str(i) for i in range(counts[WorkerClass.GPU])]
        self._busy = {c: 0 for c in WorkerClass}
        self._jobs: dict[str, _Job] = {}
        self._client = client
        self._sink: JobSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._control: ThreadPoolExecutor | None = None
        self._stopping = False

    # Executor interface

    async def start(self, sink: JobSink) -> None:
        """Connect to the daemon; raises :class:`WorkerError` when it cannot be reached."""
        self._sink, self._loop = sink, asyncio.get_running_loop()
        if self._client is None:
            self._client = await asyncio.to_thread(_connect, self._options.base_url)
        slots = max(1, sum(self._capacity.values()))
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="cryoflow-docker-job")
        self._control = ThreadPoolExecutor(2, thread_name_prefix="cryoflow-docker-ctl")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every container; jobs still running are reported lost."""
        self._stopping = True
        for job in list(self._jobs.values()):
            self._stop_container(job, Outcome.CANCEL, 0.0)
        for pool in (self._pool, self._control):
            if pool is not None:
                try:
                    await asyncio.wait_for(asyncio.to_thread(pool.shutdown, wait=True), timeout_s)
                except TimeoutError:
                    log.warning("Docker job threads still busy after %gs; leaving them", timeout_s)
        for job in list(self._jobs.values()):
            self._finish(job, JobResult(Outcome.CANCEL))
        if self._client is not None:
            self._client.close()

    def capacity(self) -> Mapping[WorkerClass, int]:
        return dict(self._capacity)

    def free_slots(self) -> Mapping[WorkerClass, int]:
        return {c: self._capacity.get(c, 0) - self._busy[c] for c in WorkerClass}

    def submit(self, task: Task) -> None:
        """Start ``task``'s container; ValueError without a free slot of its class."""
        if self._pool is None or self.free_slots()[task.worker_class] <= 0:
            raise ValueError(f"no free {task.worker_class.value} slot for job {task.id}")
        if task.id in self._jobs:
            raise ValueError(f"job {task.id} is already running")
        gpu = self._free_gpus.pop(0) if task.worker_class is WorkerClass.GPU else None
        job = self._jobs[task.id] = _Job(task, gpu_device=gpu)
        self._busy[task.worker_class] += 1
        if task.timeout_s is not None:
            assert self._loop is not None
            job.timer = self._loop.call_later(
                task.timeout_s,
                self._stop_container,
                job,
                Outcome.TIMEOUT,
                self._options.kill_grace_s,
            )
        self._pool.submit(self._run_job, job)

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        """Stop the job's container: SIGTERM now, SIGKILL after ``grace_s``."""
        job = self._jobs.get(job_id)
        if job is not None:
            self._stop_container(job, Outcome.CANCEL, grace_s)

    # Stopping a container (loop thread → control thread)

    def _stop_container(self, job: _Job, reason: Outcome, grace_s: float) -> None:
        with job.lock:
            if job.stop_reason is not None:
                return
            job.stop_reason, job.grace_s = reason, grace_s
            container = job.container
        if container is not None and self._control is not None:
            self._control.submit(_stop_quietly, container, grace_s)

    # One job (a job thread)

    def _run_job(self, job: _Job) -> None:
        try:
            result = self._run_container(job)
        except Exception as exc:  # every failure of a job ends in its result
            result = JobResult(Outcome.ERROR, error=_job_error(job.task, exc))
        self._report(self._finish, job, result)

    def _run_container(self, job: _Job) -> JobResult:
        import docker.errors

        task, task_file = job.task, None
        try:
            if len(task_to_json(task)) > TASK_ENV_MAX_BYTES:
                task_file = _write_task_file(task)
            spec = container_spec(
                task, self._options, gpu_device=job.gpu_device, task_file=task_file
            )
            prepare_host_paths(spec)
            container = self._client.containers.create(**spec.create_kwargs())
            return self._run_created(job, container, spec)
        except docker.errors.ImageNotFound as exc:
            raise WorkerError(
                f"docker image {task.docker or self._options.image!r} of node {task.node} is "
                f"not on the Docker daemon; build or load it there (job {task.id})"
            ) from exc
        finally:
            if task_file is not None:
                Path(task_file).unlink(missing_ok=True)

    def _run_created(self, job: _Job, container: Any, spec: ContainerSpec) -> JobResult:
        try:
            with job.lock:
                job.container = container
                stopped_early = job.stop_reason is not None
            if stopped_early:
                return JobResult(Outcome.CANCEL, error="stopped before its container started")
            container.start()
            self._report(self._started, job, spec.name)
            return self._follow(job, container)
        finally:
            _remove_quietly(container)

    def _follow(self, job: _Job, container: Any) -> JobResult:
        job_id = job.task.id
        reader = ProtocolReader(
            lambda key, value: self._report(self._status, job_id, key, value),
            lambda level, message: self._report(self._log, job_id, level, message),
        )
        stream = self._client.api.attach(
            container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True
        )
        for out, err in stream:
            if out:
                reader.feed_stdout(out)
            if err:
                reader.feed_stderr(err)
        reader.close()
        exit_code = container.wait().get("StatusCode")
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        result = reader.result(exit_code, oom_killed=oom)
        stats = {
            "worker": container.name,
            "node": socket.gethostname(),
            "container": container.id[:12],
            "exit_code": exit_code,
            **result.stats,
        }
        return replace(result, stats=with_times(stats, job.started))

    # Reports (loop thread)

    def _report(self, method: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(method, *args)

    def _started(self, job: _Job, name: str) -> None:
        if self._jobs.get(job.task.id) is job and self._sink is not None:
            self._sink.job_started(job.task.id, name, socket.gethostname())

    def _status(self, job_id: str, key: str, value: Any) -> None:
        if job_id in self._jobs and self._sink is not None:
            self._sink.job_status(job_id, key, value)

    def _log(self, job_id: str, level: str, message: str) -> None:
        if job_id in self._jobs and self._sink is not None:
            self._sink.job_log(job_id, level, message)

    def _finish(self, job: _Job, result: JobResult) -> None:
        if self._jobs.get(job.task.id) is not job:
            return  # already reported
        self._end(job)
        assert self._sink is not None
        if self._stopping:
            self._sink.job_lost(job.task.id, "the executor stopped while the job ran")
        else:
            self._sink.job_finished(job.task.id, _stopped_result(job, result))

    def _end(self, job: _Job) -> None:
        self._jobs.pop(job.task.id, None)
        self._busy[job.task.worker_class] -= 1
        if job.gpu_device is not None:
            self._free_gpus.append(job.gpu_device)
        if job.timer is not None:
            job.timer.cancel()


def _stopped_result(job: _Job, result: JobResult) -> JobResult:
    """A stopped job ends ``cancel`` or ``timeout`` however its container ended."""
    if job.stop_reason is Outcome.TIMEOUT:
        return replace(
            result, outcome=Outcome.TIMEOUT, error=f"timeout after {job.task.timeout_s:g}s"
        )
    if job.stop_reason is Outcome.CANCEL:
        killed = result.stats.get("exit_code") == 137
        error = (
            f"cancelled; the container was killed after a grace of {job.grace_s:g}s"
            if killed
            else result.error
        )
        return replace(result, outcome=Outcome.CANCEL, error=error)
    return result


def _job_error(task: Task, exc: Exception) -> str:
    if isinstance(exc, CryoflowError):
        return str(exc)
    return f"Docker could not run job {task.id} of node {task.node}: {type(exc).__name__}: {exc}"


def _write_task_file(task: Task) -> str:
    handle, path = tempfile.mkstemp(prefix="cryoflow-task-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(task_to_json(task))
    os.chmod(path, 0o644)
    return path


def _connect(base_url: str | None) -> Any:
    import docker

    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = base_url or os.environ.get("DOCKER_HOST") or "the default socket"
        raise WorkerError(
            f"cannot reach the Docker daemon at {where}: {exc}; start dockerd or set DOCKER_HOST"
        ) from exc
    return client


def _stop_quietly(container: Any, grace_s: float) -> None:
    import docker.errors

    try:
        container.stop(timeout=max(0, round(grace_s)))
    except docker.errors.DockerException:
        pass  # already gone: the job thread reports how it ended


def _remove_quietly(container: Any) -> None:
    import docker.errors

    try:
        container.remove(force=True)
    except docker.errors.DockerException:
        pass
