"""A ColonyOS-compatible Python client (``pycolonies``) over the head's REST API.

Code written for ColonyOS's Python client runs with one change, its import line::

    from cryoflow.colony.pycolonies import func_spec, Conditions, FuncSpec, Workflow
    from cryoflow.colony.pycolonies import colonies_client

    colonies, colonyname, colony_prvkey, executor_name, prvkey = colonies_client()
    wf = Workflow(colonyname=colonyname)
    wf.functionspecs.append(FuncSpec(funcname="gen", nodename="gen_node",
                                     conditions=Conditions(colonyname=colonyname,
                                                           executortype="wf-executor")))
    processgraph = colonies.submit_workflow(wf, prvkey)
    process = colonies.find_process("gen_node", processgraph.processids, prvkey)
    process = colonies.wait(process, 100, prvkey)

:func:`colonies_client` reads the server from ``$CRYOFLOW_URL`` (else
``$COLONIES_SERVER_HOST``/``_PORT``/``_TLS``), the colony from ``$COLONIES_COLONY_NAME``
(default ``dev``) and the keys from ``$COLONIES_COLONY_PRVKEY``/``$COLONIES_PRVKEY``
(made up when unset). The API token, when the head wants one, comes from
``$CRYOFLOW_API_TOKEN``.

Keys: an executor is registered with :meth:`Colonies.add_executor`, naming the id of
its private key (:meth:`Crypto.id`); afterwards its calls (``assign``, ``close``,
``fail``, ``add_child``, ``add_attribute``) are signed with that private key, which
this client turns into the executor's secret id on the head. User keys (``prvkey``
of ``submit_workflow``, ``find_process``, ``wait``) are accepted as they are: the head
authorises with its API token instead. The process ids of a submitted workflow
(``processgraph.processids``) name its nodes (``WORKFLOWID/NODENAME``); a process
handed to an executor carries the id the head gave it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryoflow.colony.executor import ExecutorError, call_head
from cryoflow.errors import CryoflowError

URL_ENV = "CRYOFLOW_URL"
TOKEN_ENV = "CRYOFLOW_API_TOKEN"
POLL_S = 0.1
ENDED = ("successful", "failed", "cancelled")


class ColoniesError(CryoflowError):
    """The head refused a request, cannot be reached, or nothing came in time."""


class Crypto:
    """Private keys and their ids: an id is the SHA-256 of its private key."""

    def prvkey(self) -> str:
        return secrets.token_hex(32)

    def id(self, prvkey: str) -> str:
        return hashlib.sha256(prvkey.encode()).hexdigest()


# ----------------------------------------------------------------------------- specs


@dataclass
class Conditions:
    """Where a function may run: executor type, dependencies and resources."""

    colonyname: str = ""
    executortype: str = ""
    executornames: list[str] | None = None
    dependencies: list[str] = field(default_factory=list)
    nodes: int | None = None
    cpu: str | None = None
    processes: int | None = None
    processespernode: int | None = None
    mem: str | None = None
    walltime: int | None = None
    gpu: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in (None, "")}


@dataclass
class FuncSpec:
    """One function to run: its node, function, arguments, limits and conditions."""

    funcname: str
    nodename: str = ""
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    maxwaittime: float = -1
    maxexectime: float = -1
    maxretries: int = 0
    label: str | None = None
    env: dict[str, str] | None = None
    fs: dict[str, Any] | None = None
    conditions: Conditions = field(default_factory=Conditions)

    def to_dict(self) -> dict[str, Any]:
        """The JSON function spec (limits <= 0 are left out: none)."""
        spec: dict[str, Any] = {"nodename": self.nodename or self.funcname,
                                "funcname": self.funcname, "args": list(self.args),
                                "kwargs": dict(self.kwargs), "priority": self.priority,
                                "conditions": self.conditions.to_dict()}
        for key in ("maxwaittime", "maxexectime", "maxretries"):
            if getattr(self, key) > 0:
                spec[key] = getattr(self, key)
        spec.update({k: getattr(self, k) for k in ("label", "env", "fs")
                     if getattr(self, k) is not None})
        return spec

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FuncSpec:
        conditions = dict(data.get("conditions") or {})
        known = set(Conditions.__dataclass_fields__)
        return cls(funcname=str(data.get("funcname") or ""),
                   nodename=str(data.get("nodename") or ""),
                   args=list(data.get("args") or []), kwargs=dict(data.get("kwargs") or {}),
                   priority=int(data.get("priority") or 0),
                   maxexectime=float(data.get("maxexectime") or -1),
                   maxwaittime=float(data.get("maxwaittime") or -1),
                   conditions=Conditions(**{k: v for k, v in conditions.items()
                                            if k in known}))


@dataclass
class Workflow:
    """Function specs submitted together; their dependencies make a graph."""

    colonyname: str = ""
    functionspecs: list[FuncSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"functionspecs": [s.to_dict() for s in self.functionspecs]}
        if self.colonyname:
            data["colonyname"] = self.colonyname
        return data


def func_spec(func: str, args: list[Any] | None = None, colonyname: str = "",
              executortype: str = "", *, nodename: str = "", priority: int = 0,
              maxexectime: float = -1, maxretries: int = 0, maxwaittime: float = -1,
              kwargs: dict[str, Any] | None = None,
              dependencies: list[str] | None = None) -> FuncSpec:
    """A :class:`FuncSpec` from the usual keywords."""
    return FuncSpec(funcname=func, nodename=nodename, args=list(args or []),
                    kwargs=dict(kwargs or {}), priority=priority, maxexectime=maxexectime,
                    maxretries=maxretries, maxwaittime=maxwaittime,
                    conditions=Conditions(colonyname=colonyname, executortype=executortype,
                                          dependencies=list(dependencies or [])))


# ----------------------------------------------------------------------------- answers


@dataclass
class Attribute:
    attributeid: str
    targetid: str
    key: str
    value: Any


@dataclass
class Process:
    """A process as the head shows it."""

    processid: str
    spec: FuncSpec
    state: str = "waiting"
    input: list[Any] = field(default_factory=list)
    output: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    assignedexecutor: str | None = None
    waitingfor: str | None = None
    processgraphid: str = ""

    @classmethod
    def from_view(cls, view: Mapping[str, Any], processid: str | None = None,
                  processgraphid: str = "") -> Process:
        spec = FuncSpec(funcname=str(view.get("funcname") or ""),
                        nodename=str(view.get("nodename") or ""),
                        args=list(view.get("args") or []), kwargs=dict(view.get("kwargs") or {}),
                        priority=int(view.get("priority") or 0),
                        conditions=Conditions(executortype=str(view.get("executortype") or ""),
                                              dependencies=list(view.get("dependencies") or [])))
        output = view.get("output")
        return cls(processid=processid or str(view.get("processid") or ""), spec=spec,
                   state=str(view.get("state") or ""), input=list(view.get("input") or []),
                   output=list(output) if isinstance(output, list) else
                   ([] if output is None else [output]),
                   errors=list(view.get("errors") or []),
                   attributes=[Attribute(a["attributeid"], a["targetid"], a["key"], a["value"])
                               for a in view.get("attributes") or []],
                   assignedexecutor=view.get("assignedexecutor"),
                   waitingfor=view.get("waitingfor"), processgraphid=processgraphid)


@dataclass
class ProcessGraph:
    """A submitted workflow: its id, its process ids (one per node) and its state."""

    processgraphid: str
    processids: list[str]
    state: str
    nodes: dict[str, str] = field(default_factory=dict)
    """Process id → node name."""


_executors: dict[str, str] = {}
"""Executor key id → the executor's secret id on the head (for every client here)."""
_executors_lock = threading.Lock()


class Colonies:
    """The client: ``Colonies(host, port)`` or ``Colonies(url=...)`` (see the module)."""

    def __init__(self, host: str = "localhost", port: int = 50080, tls: bool = False, *,
                 url: str | None = None, token: str | None = None) -> None:
        self.url = (url or f"{'https' if tls else 'http'}://{host}:{port}/").rstrip("/") + "/"
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)

    # ------------------------------------------------------------------ workflows

    def submit_workflow(self, workflow: Workflow | Mapping[str, Any], prvkey: str) -> ProcessGraph:
        """Submit the workflow; its process ids name its nodes."""
        spec = workflow.to_dict() if isinstance(workflow, Workflow) else dict(workflow)
        return self._graph(self._call("POST", "api/v1/workflows", {"spec": spec}))

    def get_processgraph(self, processgraphid: str, prvkey: str) -> ProcessGraph:
        return self._graph(self._workflow(processgraphid))

    def find_process(self, nodename: str, processids: list[str], prvkey: str) -> Process:
        """The process of ``nodename`` among ``processids``."""
        for processid in processids:
            if processid.partition("/")[2] == nodename:
                return self.get_process(processid, prvkey)
        raise ColoniesError(f"none of the {len(processids)} processes is node {nodename!r}")

    def get_process(self, processid: str, prvkey: str) -> Process:
        """A process by id: a node of a submitted workflow, or one handed to an executor."""
        workflow_id, _, node = processid.partition("/")
        if not node:
            view = self._call("GET", f"api/v1/processes/{_quote(processid)}")
            return Process.from_view(view)
        workflow = self._workflow(workflow_id)
        for view in workflow["processes"]:
            if view["nodename"] == node:
                return Process.from_view(view, processid, workflow_id)
        raise ColoniesError(f"workflow {workflow_id} has no process {node!r}")

    def wait(self, process: Process, timeout: float, prvkey: str) -> Process:
        """Wait up to ``timeout`` seconds for ``process`` to end; the ended process."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_process(process.processid, prvkey)
            if current.state in ENDED:
                return current
            if time.monotonic() >= deadline:
                why = f": {current.waitingfor}" if current.waitingfor else ""
                raise ColoniesError(f"process {process.processid} is still {current.state} "
                                    f"after {timeout:g} s{why}")
            time.sleep(POLL_S)

    # ------------------------------------------------------------------ executors

    def add_executor(self, executor: Mapping[str, Any], colony_prvkey: str) -> dict[str, Any]:
        """Register ``{"executorname", "executorid", "executortype"}``; the id is the
        :meth:`Crypto.id` of the private key the executor signs its calls with."""
        body = {"name": str(executor.get("executorname") or executor.get("name") or ""),
                "type": str(executor.get("executortype") or executor.get("type") or ""),
                "functions": list(executor.get("functions") or [])}
        answer = self._call("POST", "api/v1/executors", body)
        key_id = str(executor.get("executorid") or "")
        if key_id:
            with _executors_lock:
                _executors[key_id] = str(answer["executorid"])
        return {**dict(executor), "approved": True}

    def approve_executor(self, colonyname: str, executorname: str, prvkey: str) -> None:
        """Executors are approved when they register; nothing more to do."""

    def assign(self, colonyname: str, timeout: float, prvkey: str) -> Process:
        """The next process for the executor of ``prvkey``; raises when none came in time."""
        secret = self._executor(prvkey)
        answer = self._call("POST", f"api/v1/executors/{secret}/assign", {"timeout": timeout},
                            wait_s=timeout)
        if answer.get("process") is None:
            raise ColoniesError(f"no process could be assigned within {timeout:g} s")
        return Process.from_view(answer["process"])

    def close(self, processid: str, output: Any, prvkey: str) -> None:
        self._call("POST", f"api/v1/processes/{_quote(processid)}/close",
                   {"executorid": self._executor(prvkey), "output": output})

    def fail(self, processid: str, errors: list[Any], prvkey: str) -> None:
        self._call("POST", f"api/v1/processes/{_quote(processid)}/fail",
                   {"executorid": self._executor(prvkey), "errors": [str(e) for e in errors]})

    def add_child(self, processgraphid: str, parentprocessid: str, childprocessid: str,
                  funcspec: FuncSpec | Mapping[str, Any], nodename: str, insert: bool,
                  prvkey: str) -> None:
        """Add ``funcspec`` as node ``nodename`` below the running process
        ``parentprocessid`` (with ``insert``, between it and its children)."""
        spec = funcspec.to_dict() if isinstance(funcspec, FuncSpec) else dict(funcspec)
        spec["nodename"] = nodename or spec.get("nodename")
        self._call("POST", f"api/v1/processes/{_quote(parentprocessid)}/children",
                   {"executorid": self._executor(prvkey), "spec": spec, "insert": insert})

    def add_attribute(self, processid: str, key: str, value: Any, prvkey: str) -> Attribute:
        """Share ``key = value`` with every process of the running process's workflow."""
        answer = self._call("POST", f"api/v1/processes/{_quote(processid)}/attributes",
                            {"executorid": self._executor(prvkey), "key": key, "value": value})
        return Attribute(answer["attributeid"], answer["targetid"], answer["key"],
                         answer["value"])

    def get_attribute(self, attributeid: str, prvkey: str) -> Attribute:
        answer = self._call("GET", f"api/v1/attributes/{_quote(attributeid)}")
        return Attribute(answer["attributeid"], answer["targetid"], answer["key"],
                         answer["value"])

    # ------------------------------------------------------------------ HTTP

    def _executor(self, prvkey: str) -> str:
        with _executors_lock:
            secret = _executors.get(Crypto().id(prvkey))
        if secret is None:
            raise ColoniesError("this private key belongs to no registered executor; "
                                "register it with add_executor first")
        return secret

    def _workflow(self, workflow_id: str) -> dict[str, Any]:
        return self._call("GET", f"api/v1/workflows/{_quote(workflow_id)}")

    @staticmethod
    def _graph(view: Mapping[str, Any]) -> ProcessGraph:
        workflow_id = str(view["workflowid"])
        nodes = {f"{workflow_id}/{p['nodename']}": p["nodename"] for p in view["processes"]}
        return ProcessGraph(workflow_id, list(nodes), str(view["state"]), nodes)

    def _call(self, method: str, path: str, body: Any = None,
              wait_s: float = 0.0) -> dict[str, Any]:
        try:
            return call_head(self.url, method, path, body, token=self.token, wait_s=wait_s)
        except ExecutorError as exc:
            raise ColoniesError(str(exc)) from None


def colonies_client() -> tuple[Colonies, str, str, str, str]:
    """``(colonies, colonyname, colony_prvkey, executor_name, prvkey)`` from the
    environment (see the module docstring)."""
    url = os.environ.get(URL_ENV)
    if url:
        client = Colonies(url=url)
    else:
        client = Colonies(os.environ.get("COLONIES_SERVER_HOST", "localhost"),
                          int(os.environ.get("COLONIES_SERVER_PORT", "50080")),
                          os.environ.get("COLONIES_SERVER_TLS", "false").lower() == "true")
    crypto = Crypto()
    return (client, os.environ.get("COLONIES_COLONY_NAME", "dev"),
            os.environ.get("COLONIES_COLONY_PRVKEY") or crypto.prvkey(),
            os.environ.get("COLONIES_EXECUTOR_NAME", "myexecutor"),
            os.environ.get("COLONIES_PRVKEY") or crypto.prvkey())


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")
