"""A FAKE Kubernetes API server for the Kubernetes executor tests.

No real Kubernetes API server can be installed on the machines these tests run on
(they have no container runtime for one), so this small ``http.server`` stands in for one. It is
not Kubernetes: it implements only the REST paths cryoflow's executor uses, with the
response shapes of the real API, for the real ``kubernetes`` Python client:

- ``POST/GET /apis/batch/v1/namespaces/{ns}/jobs`` (list, ``labelSelector``,
  ``fieldSelector=metadata.name=…``, ``watch=true`` as chunked JSON lines),
  ``GET/DELETE …/jobs/{name}`` and ``GET …/jobs/{name}/status``;
- ``GET /api/v1/namespaces/{ns}/pods`` (``labelSelector``), ``GET …/pods/{name}`` and
  ``GET …/pods/{name}/log`` (``follow=true`` streams);
- ``GET /version``.

Each created Job gets one pod, and a fake kubelet runs the pod's container
``command`` as a local process with the container's ``env`` (``python3`` becomes
this interpreter; the image is not used, except that an image named ``missing/…``
leaves the pod waiting with ``ErrImagePull``). Its output is the pod's log; its exit
code ends the pod and the Job (``Complete`` or ``Failed``). Deleting a Job sends
SIGTERM to the process and SIGKILL after the grace period. Every posted Job can be
checked by a ``validate`` callable (the tests pass the ``batch/v1`` JSON Schema);
an invalid one gets a 422.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?(/status)?$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")
NODE_NAME = "fake-node"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Pod:
    body: dict[str, Any]
    log: bytearray = field(default_factory=bytearray)
    process: subprocess.Popen[bytes] | None = None
    ended: bool = False


class FakeCluster:
    """The state behind the fake API: Jobs, their pods, a history of Job events."""

    def __init__(
        self,
        validate: Callable[[Mapping[str, Any]], list[str]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.validate = validate
        self.env = dict(env or {})
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.version = 0
        self.changed = threading.Condition()

    # Jobs

    def create_job(self, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        problems = self.validate(body) if self.validate else []
        if problems:
            return 422, _status(422, "Invalid", "; ".join(problems[:5]))
        name = body["metadata"]["name"]
        with self.changed:
            if (namespace, name) in self.jobs:
                return 409, _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            job = json.loads(json.dumps(body))
            meta = job["metadata"]
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now())
            job["status"] = {"active": 1, "startTime": _now()}
            self.jobs[(namespace, name)] = job
            self.created.append(job)
            self._record("ADDED", job)
            pod = self._make_pod(namespace, job)
        threading.Thread(target=self._kubelet, args=(namespace, pod), daemon=True).start()
        return 201, job

    def delete_job(self, namespace: str, name: str, grace_s: float) -> tuple[int, dict[str, Any]]:
        with self.changed:
            job = self.jobs.pop((namespace, name), None)
            if job is None:
                return 404, _status(404, "NotFound", f'jobs.batch "{name}" not found')
            self._record("DELETED", job)
            pods = [
                k
                for k, p in self.pods.items()
                if k[0] == namespace and p.body["metadata"]["labels"].get("job-name") == name
            ]
        for key in pods:
            threading.Thread(
                target=self._kill, args=(self.pods.pop(key), grace_s), daemon=True
            ).start()
        return 200, _status(200, "Success", "")

    def _record(self, kind: str, job: dict[str, Any]) -> None:
        self.version += 1
        job["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, kind, json.loads(json.dumps(job))))
        self.changed.notify_all()

    def job_events(
        self, namespace: str, selectors: Mapping[str, str], since: int, timeout_s: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Job events after ``since`` that match, until ``timeout_s`` passes."""
        deadline = _monotonic() + timeout_s
        seen = since
        while True:
            with self.changed:
                fresh = [e for e in self.events if e[0] > seen]
                if not fresh:
                    left = deadline - _monotonic()
                    if left <= 0:
                        return
                    self.changed.wait(min(left, 0.5))
                    continue
            for version, kind, job in fresh:
                seen = version
                if job["metadata"]["namespace"] == namespace and _matches(job, selectors):
                    yield kind, job

    # Pods and the fake kubelet

    def _make_pod(self, namespace: str, job: dict[str, Any]) -> _Pod:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        labels = {
            **template.get("metadata", {}).get("labels", {}),
            "job-name": job["metadata"]["name"],
            "controller-uid": job["metadata"]["uid"],
        }
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
            },
            "spec": {**template["spec"], "nodeName": NODE_NAME},
            "status": {"phase": "Pending"},
        }
        pod = self.pods[(namespace, name)] = _Pod(body)
        return pod

    def _kubelet(self, namespace: str, pod: _Pod) -> None:
        container = pod.body["spec"]["containers"][0]
        if str(container.get("image", "")).startswith("missing/"):
            with self.changed:
                pod.body["status"]["containerStatuses"] = [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "waiting": {
                                "reason": "ErrImagePull",
                                "message": "the fake cluster has no such image",
                            }
                        },
                    }
                ]
            return
        command = [sys.executable if part == "python3" else part for part in container["command"]]
        with self.changed:
            pod.process = subprocess.Popen(
                command,
                env=self._env(pod, container),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            pod.body["status"].update(phase="Running", startTime=_now())
        assert pod.process.stdout is not None
        for chunk in iter(lambda: pod.process.stdout.read1(65536), b""):  # type: ignore[union-attr]
            with self.changed:
                pod.log += chunk
                self.changed.notify_all()
        self._ended(namespace, pod, pod.process.wait())

    def _env(self, pod: _Pod, container: Mapping[str, Any]) -> dict[str, str]:
        env = {**os.environ, **self.env}
        fields = {"metadata.name": pod.body["metadata"]["name"], "spec.nodeName": NODE_NAME}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        return env

    def _ended(self, namespace: str, pod: _Pod, code: int) -> None:
        exit_code = 128 - code if code < 0 else code
        with self.changed:
            pod.ended = True
            pod.body["status"].update(phase="Succeeded" if code == 0 else "Failed")
            pod.body["status"]["containerStatuses"] = [
                {
                    "name": "job",
                    "image": "",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if code == 0 else "Error",
                        }
                    },
                }
            ]
            job = self.jobs.get((namespace, pod.body["metadata"]["labels"]["job-name"]))
            if job is not None:
                kind = "Complete" if code == 0 else "Failed"
                job["status"] = {
                    "succeeded" if code == 0 else "failed": 1,
                    "completionTime": _now(),
                    "conditions": [{"type": kind, "status": "True"}],
                }
                self._record("MODIFIED", job)
            self.changed.notify_all()

    def _kill(self, pod: _Pod, grace_s: float) -> None:
        process = pod.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(max(grace_s, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)

    def follow_log(self, pod: _Pod, follow: bool) -> Iterator[bytes]:
        sent = 0
        while True:
            with self.changed:
                chunk = bytes(pod.log[sent:])
                done = pod.ended or (pod.process is None and not follow)
                if not chunk and not done and follow:
                    self.changed.wait(0.5)
                    continue
            if chunk:
                sent += len(chunk)
                yield chunk
            elif done or not follow:
                return

    def stop(self) -> None:
        for pod in list(self.pods.values()):
            self._kill(pod, 0.1)


def _monotonic() -> float:
    import time

    return time.monotonic()


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 300 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _selectors(query: Mapping[str, list[str]]) -> dict[str, str]:
    """``labelSelector=a=b,c=d`` and ``fieldSelector=metadata.name=x`` as one dict."""
    found: dict[str, str] = {}
    for key in ("labelSelector", "fieldSelector"):
        for part in ",".join(query.get(key, [])).split(","):
            if "=" in part:
                name, value = part.split("=", 1)
                found[name.strip()] = value.strip()
    return found


def _matches(obj: Mapping[str, Any], selectors: Mapping[str, str]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for key, value in selectors.items():
        actual = obj["metadata"].get("name") if key == "metadata.name" else labels.get(key)
        if actual != value:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base name
        pass

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: Iterator[bytes], content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        self.cluster.requests.append((method, self.path))
        if parts.path == "/version":
            self._reply(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"})
        elif match := _JOBS.match(parts.path):
            self._jobs(method, match.group(1), match.group(2), query)
        elif match := _PODS.match(parts.path):
            self._pods(method, match.group(1), match.group(2), bool(match.group(3)), query)
        else:
            self._reply(404, _status(404, "NotFound", f"the fake API has no {parts.path}"))

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _jobs(
        self, method: str, namespace: str, name: str | None, query: Mapping[str, list[str]]
    ) -> None:
        cluster = self.cluster
        if method == "POST" and name is None:
            self._reply(*cluster.create_job(namespace, self._body()))
        elif method == "DELETE" and name:
            body = self._body()
            grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds", [30])[0])
            self._reply(*cluster.delete_job(namespace, name, float(grace)))
        elif method == "GET" and name:
            job = cluster.jobs.get((namespace, name))
            self._reply(200, job) if job else self._reply(
                404, _status(404, "NotFound", f'jobs.batch "{name}" not found')
            )
        elif method == "GET" and query.get("watch") == ["true"]:
            self._watch_jobs(namespace, query)
        elif method == "GET":
            selectors = _selectors(query)
            items = [
                j
                for (ns, _), j in sorted(cluster.jobs.items())
                if ns == namespace and _matches(j, selectors)
            ]
            self._reply(
                200,
                {
                    "kind": "JobList",
                    "apiVersion": "batch/v1",
                    "metadata": {"resourceVersion": str(cluster.version)},
                    "items": items,
                },
            )
        else:
            self._reply(405, _status(405, "MethodNotAllowed", method))

    def _watch_jobs(self, namespace: str, query: Mapping[str, list[str]]) -> None:
        cluster = self.cluster
        selectors = _selectors(query)
        timeout_s = float(query.get("timeoutSeconds", ["30"])[0])
        since = query.get("resourceVersion", [None])[0]
        with cluster.changed:
            start = cluster.version
            initial = (
                []
                if since
                else [
                    j
                    for (ns, _), j in sorted(cluster.jobs.items())
                    if ns == namespace and _matches(j, selectors)
                ]
            )
            initial = json.loads(json.dumps(initial))

        def lines() -> Iterator[bytes]:
            for job in initial:
                yield json.dumps({"type": "ADDED", "object": job}).encode() + b"\n"
            begin = int(since) if since else start
            for kind, job in cluster.job_events(namespace, selectors, begin, timeout_s):
                yield json.dumps({"type": kind, "object": job}).encode() + b"\n"

        self._stream(lines(), "application/json")

    def _pods(
        self,
        method: str,
        namespace: str,
        name: str | None,
        log: bool,
        query: Mapping[str, list[str]],
    ) -> None:
        cluster = self.cluster
        if method != "GET":
            self._reply(405, _status(405, "MethodNotAllowed", method))
            return
        if name is None:
            selectors = _selectors(query)
            with cluster.changed:
                items = [
                    json.loads(json.dumps(p.body))
                    for (ns, _), p in sorted(cluster.pods.items())
                    if ns == namespace and _matches(p.body, selectors)
                ]
            self._reply(
                200,
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(cluster.version)},
                    "items": items,
                },
            )
            return
        pod = cluster.pods.get((namespace, name))
        if pod is None:
            self._reply(404, _status(404, "NotFound", f'pods "{name}" not found'))
        elif log:
            self._stream(cluster.follow_log(pod, query.get("follow") == ["true"]), "text/plain")
        else:
            with cluster.changed:
                body = json.loads(json.dumps(pod.body))
            self._reply(200, body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


class FakeKubernetes:
    """The fake API server on 127.0.0.1, serving in a thread; :meth:`stop` ends it."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        handler = type("Handler", (_Handler,), {"cluster": cluster})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.cluster.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# The batch/v1 Job schema every posted Job is checked against

JOB_SCHEMA = Path(__file__).parent / "data" / "k8s" / "batch-v1-job.schema.json"
"""JSON Schema of a ``batch/v1`` Job, trimmed (no descriptions, titles or defaults)
from the one the ``kubernetes`` client's ``V1Job`` model gives; those models are
generated from Kubernetes' official OpenAPI definition. Nested objects refuse unknown
fields and carry the definition's required fields."""


def job_schema_from_client_models() -> dict[str, Any]:
    """The trimmed schema, made afresh from the installed ``kubernetes`` client."""
    from kubernetes.client.models import V1Job

    def trim(node: Any, in_names: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                k: trim(v, not in_names and k in ("properties", "$defs"))
                for k, v in node.items()
                if in_names or k not in ("description", "title", "default")
            }
        if isinstance(node, list):
            return [trim(v) for v in node]
        return node

    schema = trim(V1Job.model_json_schema(by_alias=True))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return dict(schema)


def job_validator() -> Callable[[Mapping[str, Any]], list[str]]:
    """A ``validate`` callable for :class:`FakeCluster`: the problems of a Job, if any."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(JOB_SCHEMA.read_text()))

    def leaves(error: Any) -> Iterator[Any]:
        """The innermost errors: an ``anyOf [object, null]`` hides them in its context."""
        if not error.context:
            yield error
        for sub in error.context:
            yield from leaves(sub)

    def problems(job: Mapping[str, Any]) -> list[str]:
        found = (leaf for error in validator.iter_errors(job) for leaf in leaves(error))
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in found
            if not e.message.endswith("is not of type 'null'")
        ]

    return problems
