"""How a job's container looks: image, command, environment, mounts, limits (pure).

:func:`container_spec` turns a :class:`Task` and :class:`DockerOptions` into a
:class:`ContainerSpec` for the Docker executor (:mod:`.docker`); :func:`plan_mounts`
finds every host path the job needs and mounts it at the same path (see the
executor's docstring for the rules). The only probe of the file system is ``exists``
(and the creation of a ``tempdir`` the job will use anyway).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoflow.errors import CryoflowError
from cryoflow.workers.args import local_path, tempdir_path, truthy
from cryoflow.workers.base import Task
from cryoflow.workers.lineproto import task_to_json

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding this ``cryoflow`` package and the built-in ``modules``."""
RUNNER_COMMAND = ("python3", "-m", "cryoflow.workers.container")
TASK_ENV_MAX_BYTES = 100_000
"""A larger task is handed to the container as a mounted file instead of a variable."""

Exists = Callable[[str], bool]


@dataclass(frozen=True, kw_only=True)
class DockerOptions:
    """How :class:`DockerExecutor` runs containers. Units are in the names."""

    image: str | None = None
    """Image for nodes without ``docker``; None: such a job fails and says so."""
    base_url: str | None = None
    """Docker daemon URL; default: ``DOCKER_HOST`` or the local socket."""
    network: str = "none"
    user: str | None = None
    """``uid:gid`` in the container; default: the head's own."""
    memory: str | int | None = None
    cpus: float | None = None
    mount_package: bool = True
    """Mount this cryoflow package into the container and put it on PYTHONPATH."""
    kill_grace_s: float = 2.0
    """Between SIGTERM and SIGKILL when a timed-out job's container is stopped."""
    command: tuple[str, ...] = RUNNER_COMMAND
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BindMount:
    """A host path mounted at ``target`` in the container."""

    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one job's container."""

    image: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    mounts: tuple[BindMount, ...]
    user: str
    network_mode: str
    labels: Mapping[str, str]
    name: str
    mem_limit: str | int | None = None
    nano_cpus: int | None = None
    gpu_device: str | None = None

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.create``."""
        from docker.types import DeviceRequest, Mount

        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": list(self.command),
            "environment": dict(self.environment),
            "mounts": [
                Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in self.mounts
            ],
            "user": self.user,
            "network_mode": self.network_mode,
            "labels": dict(self.labels),
            "name": self.name,
            "init": True,
            "detach": True,
        }
        if self.mem_limit is not None:
            kwargs["mem_limit"] = self.mem_limit
        if self.nano_cpus is not None:
            kwargs["nano_cpus"] = self.nano_cpus
        if self.gpu_device is not None:
            kwargs["device_requests"] = [
                DeviceRequest(device_ids=[self.gpu_device], capabilities=[["gpu"]])
            ]
        return kwargs


def container_spec(
    task: Task,
    options: DockerOptions,
    *,
    gpu_device: str | None = None,
    task_file: str | None = None,
    exists: Exists = os.path.exists,
) -> ContainerSpec:
    """The container for ``task``; raises :class:`CryoflowError` without an image."""
    image = task.docker or options.image
    if not image:
        raise CryoflowError(
            f"node {task.node} has no docker image; set 'docker' on the node or give "
            "the Docker executor a default image"
        )
    resources = task.extra.get("resources") or {}
    cpus = resources.get("cpus", options.cpus)
    name = container_name(task.id)
    mounts = plan_mounts(task, exists=exists, package=options.mount_package)
    if task_file is not None:
        mounts = (*mounts, BindMount(task_file, task_file, True))
    return ContainerSpec(
        image=image,
        command=options.command,
        environment=_environment(task, options, task_file, name),
        mounts=mounts,
        user=options.user or f"{os.getuid()}:{os.getgid()}",
        network_mode=str(task.extra.get("network") or options.network),
        labels={
            "cryoflow.job": task.id,
            "cryoflow.workflow": task.workflow,
            "cryoflow.node": task.node,
            "cryoflow.pebble": str(task.pebble_id),
        },
        name=name,
        mem_limit=resources.get("memory", options.memory),
        nano_cpus=None if cpus is None else int(float(cpus) * 1e9),
        gpu_device=gpu_device,
    )


def container_name(job_id: str) -> str:
    """A unique, valid container name that shows the job: ``cf-12-Wind-3-1-a1b2c3``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", job_id).strip("-.")[:80]
    return f"cf-{slug}-{uuid.uuid4().hex[:6]}"


def _environment(
    task: Task, options: DockerOptions, task_file: str | None, name: str
) -> dict[str, str]:
    env = {
        "CRYOFLOW_JOB_ID": task.id,
        "CRYOFLOW_WORKER_NAME": name,
        "CRYOFLOW_NODE_NAME": socket.gethostname(),
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": tempfile.gettempdir(),
        **options.env,
    }
    if options.mount_package:
        env["PYTHONPATH"] = str(PACKAGE_ROOT)
    if task_file is None:
        env["CRYOFLOW_TASK"] = task_to_json(task)
    else:
        env["CRYOFLOW_TASK_FILE"] = task_file
    return env


def plan_mounts(
    task: Task, *, exists: Exists = os.path.exists, package: bool = True
) -> tuple[BindMount, ...]:
    """Every host path the job needs, at the same path (see the module docstring)."""
    wanted: dict[str, bool] = {}  # path -> read-only

    def want(path: str, read_only: bool) -> None:
        path = os.path.normpath(path)
        if path != "/":
            wanted[path] = wanted.get(path, True) and read_only

    for path, read_only in _job_paths(task, exists):
        want(path, read_only)
    for folder in _code_folders(task, package):
        want(folder, True)
    extra = [BindMount(src, dst, mode == "ro") for src, dst, mode in task.volumes]
    targets = [os.path.normpath(m.target) for m in extra]
    mounts = [
        BindMount(p, p, ro)
        for p, ro in sorted(wanted.items())
        if not _covered(p, ro, wanted) and not _under_any(p, targets)
    ]
    return tuple(mounts + extra)


def _under_any(path: str, targets: list[str]) -> bool:
    """The node's own volumes win over a host path of the same name found in its args."""
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def _covered(path: str, read_only: bool, wanted: Mapping[str, bool]) -> bool:
    """True when a parent folder is mounted with at least the access ``path`` needs."""
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        if parent in wanted and (read_only or not wanted[parent]):
            return True
        parent = os.path.dirname(parent)
    return False


def _job_paths(task: Task, exists: Exists) -> Iterator[tuple[str, bool]]:
    typed = set(task.files)
    for name, spec in task.files.items():
        yield from _typed_paths(task, name, spec)
    for name, value in task.args.items():
        if name not in typed:
            for text in _strings(value):
                yield from _plain_path(text, exists)
    if task.workdir:
        yield task.workdir, False
    for post in task.post:
        target = str(post.get("target", ""))
        if target.startswith("/") or target.startswith("file:"):
            yield local_path(target, "post target"), False


def _typed_paths(task: Task, name: str, spec: Mapping[str, Any]) -> Iterator[tuple[str, bool]]:
    kind, value = spec.get("type"), task.args.get(name)
    if kind == "tempdir":
        yield str(tempdir_path(task, name, spec, value)), False
        return
    for text in _strings(value):
        if "://" in text and not text.startswith("file:"):
            continue  # a URL the runtime fetches itself
        path = local_path(text)
        if kind == "dir":
            yield path, False
        elif kind == "file" and truthy(spec.get("unzip")):
            yield os.path.dirname(path) or "/", False  # unpacked next to the archive
        elif kind == "file":
            yield path, True


def _plain_path(text: str, exists: Exists) -> Iterator[tuple[str, bool]]:
    """An absolute path in an untyped arg: read-only if it exists, else its folder rw."""
    if not (text.startswith("/") or text.startswith("file://")):
        return
    try:
        path = local_path(text)
    except CryoflowError:
        return
    if exists(path):
        yield path, True
    elif exists(os.path.dirname(path)):
        yield os.path.dirname(path), False


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _code_folders(task: Task, package: bool) -> Iterator[str]:
    if task.module_ref and task.module_ref.endswith(".py"):
        yield os.path.dirname(os.path.abspath(task.module_ref))
    yield from task.module_paths
    if package:
        yield str(PACKAGE_ROOT / "cryoflow")


def prepare_host_paths(spec: ContainerSpec) -> None:
    """Create the read-write folders on the host, as the head's user, before mounting.

    Docker would create a missing source folder itself, owned by root.
    """
    for mount in spec.mounts:
        if not mount.read_only:
            Path(mount.source).mkdir(parents=True, exist_ok=True)
