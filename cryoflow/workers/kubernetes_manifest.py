"""The ``batch/v1`` Job of one cryoflow job (pure), for the Kubernetes executor.

:func:`job_manifest` turns a :class:`Task` and :class:`KubernetesOptions` into the
Job the executor (:mod:`.kubernetes`) creates: labels, annotations that let a new
head find it again, ``backoffLimit: 0``, ``ttlSecondsAfterFinished``, the pod's
command, environment (the task as JSON), resources and ``nodeSelector``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryoflow.errors import CryoflowError
from cryoflow.graph.model import WorkerClass
from cryoflow.workers.base import Task
from cryoflow.workers.lineproto import task_to_json

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PREFIX = "cryoflow.io/"
RUNNER_COMMAND = ("python3", "-m", "cryoflow.workers.container")
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


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
