"""What the head derives from a graph for its jobs: tasks, cache keys, worker classes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryoflow.engine.records import JobSpec
from cryoflow.graph.instances import base_name
from cryoflow.graph.model import Graph, WorkerClass
from cryoflow.graph.modules import builtin_modules_dir
from cryoflow.workers.base import Task


def task_for(graph: Graph, job: JobSpec, *, module_paths: tuple[str, ...],
             staging: Mapping[str, Any], max_result_bytes: int) -> Task:
    """The self-contained task a worker runs for ``job``."""
    node = graph.nodes[base_name(job.node)]
    module, module_ref, args = node.module, node.module_ref, job.args
    if node.service_url:
        module, module_ref = "service", str(builtin_modules_dir() / "service.py")
        args = {"url": node.service_url, "args": dict(job.args)}
    return Task(
        id=job.id, pebble_id=job.pebble_id, node=job.node, module=module,
        module_ref=module_ref, args=args, worker_class=job.worker_class,
        files=job.files, loop=node.loop, post=job.post, timeout_s=job.timeout_s,
        workdir=job.workdir, workflow=graph.name, ccnode=job.ccnode,
        docker=node.docker, image=node.image, volumes=node.volumes, extra=node.extra,
        module_paths=module_paths, staging=staging, max_result_bytes=max_result_bytes,
    )


def cache_key(graph: Graph, job: JobSpec) -> str | None:
    """The hash of a cached node's module and listed args, or None (no ``cache``)."""
    node = graph.nodes[base_name(job.node)]
    if node.cache is None:
        return None
    inputs = {name: job.args.get(name) for name in node.cache.args}
    text = json.dumps([node.module, node.module_ref, inputs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def needs_classes(graph: Graph) -> set[WorkerClass]:
    """The worker classes a graph's non-input nodes need."""
    return {n.needs for n in graph if not n.is_input}


def missing_classes(graph: Graph, capacity: Mapping[WorkerClass, int]) -> list[str]:
    """Sentences for each worker class the graph needs that no worker has."""
    problems = []
    for worker_class in sorted(needs_classes(graph)):
        if capacity.get(worker_class, 0) <= 0:
            nodes = [n.name for n in graph if n.needs is worker_class and not n.is_input]
            hint = "--gpus N" if worker_class is WorkerClass.GPU else f"--{worker_class}-workers N"
            if worker_class is WorkerClass.NORMAL:
                hint = "--workers N"
            problems.append(
                f"nodes {', '.join(nodes)} need {worker_class.value} workers but none are "
                f"configured; start some with {hint}")
    return problems
