"""ColonyOS-style external executors beside the head: the process queue.

:class:`ColonyQueue` holds the jobs of nodes with an ``executortype`` (handed over by
:class:`~cryoflow.workers.routing.RoutingExecutor`) until an executor of that type takes
one over the REST API, in any language:

- an executor registers its ``type`` (and optionally the ``functions`` it knows) and
  gets a secret ``executorid``;
- it long-polls ``assign`` with a timeout and gets the best waiting process of its type
  (highest priority, then oldest), with its ``input``: the concatenation of its
  parents' outputs in the order of its ``dependencies``;
- it ends the process with ``close`` (an ``output`` list) or ``fail`` (``errors``); only
  the executor it was assigned to may do so;
- a process not closed within its ``maxexectime`` ends ``timeout`` and is tried again
  up to ``maxretries`` (the engine retries it); an executor silent for
  ``executor_timeout_s`` loses its processes back to the queue;
- a waiting process that no registered executor can take says so (``waitingfor`` in
  its view, and the job status ``waitingfor`` in the web view); one not assigned within
  its ``maxwaittime`` (> 0) ends ``timeout`` with the reason;
- executors add attributes (:mod:`cryoflow.colony.attributes`) that every process of
  the same workflow sees.

Time comes from ``clock``; :meth:`ColonyQueue.sweep` applies the deadlines and is
called every :data:`SWEEP_S` by :class:`~cryoflow.colony.service.ColonyService`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryoflow.colony.attributes import AttributeProblem, AttributeStore
from cryoflow.errors import CryoflowError
from cryoflow.graph.model import Outcome
from cryoflow.pyapi.calls import concatenate
from cryoflow.workers.base import JobResult, JobSink, Task

log = logging.getLogger("cryoflow.colony")

SWEEP_S = 0.5
EXECUTOR_TIMEOUT_S = 60.0
MAX_ASSIGN_TIMEOUT_S = 300.0


class ColonyError(CryoflowError):
    """A request of an executor cannot be done; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class ExecutorInfo:
    """A registered executor."""

    id: str
    name: str
    type: str
    functions: tuple[str, ...] = ()


@dataclass(eq=False)
class Process:
    """One attempt of one job held for external executors."""

    id: str
    task: Task
    sink: Any
    priority: int
    seq: int
    state: str = "waiting"
    executor: ExecutorInfo | None = None
    deadline: float | None = None
    output: Any = None
    errors: list[str] = field(default_factory=list)
    since: float = 0.0
    """When the process started to wait for an executor."""
    note: str | None = None
    """Why a waiting process is not taken (no executor serves its type), else None."""
    shared: AttributeStore | None = None

    @property
    def group(self) -> tuple[int, int]:
        """Which workflow the process belongs to (its head, and its pebble there)."""
        return id(self.sink), self.task.pebble_id

    @property
    def maxwaittime(self) -> float | None:
        value = self.task.extra.get("maxwaittime")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    @property
    def funcname(self) -> str:
        return str(self.task.extra.get("funcname") or self.task.args.get("callable") or "")

    @property
    def executortype(self) -> str:
        return str(self.task.extra.get("executortype") or "")

    def view(self) -> dict[str, Any]:
        """The process as executors and ``get`` see it."""
        args, extra = self.task.args, self.task.extra
        parents = list(args.get("parents") or ())
        return {
            "processid": self.id, "nodename": self.task.node.split("/")[-1],
            "funcname": self.funcname, "executortype": self.executortype,
            "args": list(args.get("args") or ()), "kwargs": dict(args.get("kwargs") or {}),
            "env": dict(extra.get("env") or {}), "dependencies": parents,
            "input": concatenate(args.get(f"input:{p}") for p in parents),
            "priority": self.priority, "maxexectime": self.task.timeout_s,
            "state": self.state, "jobid": self.task.id,
            "assignedexecutor": self.executor.name if self.executor else None,
            "output": self.output, "errors": list(self.errors),
            "waitingfor": self.note, "maxwaittime": self.maxwaittime,
            "attributes": self.shared.of_group(self.group) if self.shared else [],
        }


@dataclass
class _Waiter:
    executor: ExecutorInfo
    future: asyncio.Future[str]


class ColonyQueue:
    """Processes waiting for, or assigned to, external executors (see the module)."""

    def __init__(self, *, executor_timeout_s: float = EXECUTOR_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.executor_timeout_s = executor_timeout_s
        self.clock = clock
        self.executors: dict[str, ExecutorInfo] = {}
        self.processes: dict[str, Process] = {}
        self._by_job: dict[str, str] = {}
        self._seen: dict[str, float] = {}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self.attributes = AttributeStore()

    # ------------------------------------------------------------------ executors

    def register(self, name: str, type_: str, functions: tuple[str, ...] = ()) -> ExecutorInfo:
        """Register an executor; its ``id`` is the secret it uses from now on."""
        info = ExecutorInfo(secrets.token_hex(16), name, type_, tuple(functions))
        self.executors[info.id] = info
        self._seen[info.id] = self.clock()
        self._update_notes()
        return info

    def executor(self, executor_id: str) -> ExecutorInfo:
        info = self.executors.get(executor_id)
        if info is None:
            raise ColonyError(404, "there is no executor with this id (an executor silent "
                                   "for too long is forgotten); register again")
        self._seen[executor_id] = self.clock()
        return info

    async def assign(self, executor_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The best waiting process for the executor, waiting up to ``timeout_s`` for one."""
        info = self.executor(executor_id)
        process = self._best(info)
        if process is None and timeout_s > 0:
            waiter = _Waiter(info, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                await asyncio.wait({waiter.future}, timeout=min(timeout_s, MAX_ASSIGN_TIMEOUT_S))
            finally:
                self._waiters.remove(waiter)
            if waiter.future.done() and not waiter.future.cancelled():
                process = self.processes.get(waiter.future.result())
            else:
                waiter.future.cancel()
        self._seen[executor_id] = self.clock()
        return None if process is None else process.view()

    def release_waiters(self) -> None:
        """Answer every long poll at once with no process (the server is stopping)."""
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.cancel()

    # ------------------------------------------------------------------ from the heads

    def put(self, task: Task, sink: JobSink, priority: int) -> None:
        """Hold ``task`` for an executor of its type (called by the routing executor)."""
        process = Process(secrets.token_hex(16), task, sink, priority, next(self._seq),
                          since=self.clock(), shared=self.attributes)
        self.processes[process.id] = process
        self._by_job[task.id] = process.id
        self._offer(process)
        self._update_notes()

    def cancel(self, job_id: str) -> bool:
        """The head cancelled the job: it ends ``cancel``; a later close is refused."""
        process = self.processes.get(self._by_job.get(job_id, ""))
        if process is None or process.state not in ("waiting", "running"):
            return False
        self._end(process, "failed", JobResult(Outcome.CANCEL, error="cancelled"),
                  errors=["cancelled"])
        return True

    def drop(self, sink: JobSink) -> None:
        """Forget the open processes of a head that stops (they stay queued in its store)."""
        for process in list(self.processes.values()):
            if process.sink is sink and process.state in ("waiting", "running"):
                process.state = "dropped"

    # ------------------------------------------------------------------ from executors

    def close(self, process_id: str, executor_id: str, output: Any) -> dict[str, Any]:
        """The executor finished the process with ``output``."""
        process = self._owned(process_id, executor_id)
        result = JobResult(Outcome.SUCCESS, retval={"result": output})
        self._end(process, "successful", result, output=output)
        return process.view()

    def fail(self, process_id: str, executor_id: str, errors: list[str]) -> dict[str, Any]:
        """The executor could not do the process."""
        process = self._owned(process_id, executor_id)
        text = "; ".join(errors) or "the executor reported a failure"
        self._end(process, "failed", JobResult(Outcome.ERROR, error=text), errors=errors)
        return process.view()

    def add_child(self, process_id: str, executor_id: str,
                  request: Mapping[str, Any]) -> None:
        """Grow the running process's graph (see :mod:`cryoflow.colony.dynamic`)."""
        process = self._owned(process_id, executor_id)
        grow = getattr(process.sink, "grow_now", None)
        reason = grow(process.task.id, request) if grow else "this run cannot grow its graph"
        if reason is not None:
            raise ColonyError(409 if "cycle" in reason or "already" in reason else 400, reason)

    def add_attribute(self, process_id: str, executor_id: str, key: Any,
                      value: Any) -> dict[str, Any]:
        """The executor of a running process shares ``key = value`` with its workflow."""
        process = self._owned(process_id, executor_id)
        try:
            return self.attributes.add(process.group, process.id, key, value).view()
        except AttributeProblem as exc:
            raise ColonyError(400, str(exc)) from None

    def attribute(self, attribute_id: str) -> dict[str, Any]:
        try:
            return self.attributes.get(attribute_id).view()
        except AttributeProblem as exc:
            raise ColonyError(404, str(exc)) from None

    def process(self, process_id: str) -> Process:
        found = self.processes.get(process_id)
        if found is None:
            raise ColonyError(404, f"there is no process {process_id}")
        return found

    def latest(self, job_prefix: str) -> Process | None:
        """The newest process of a job (any attempt): ``"1/gen"`` → its last process."""
        ids = [p for j, p in self._by_job.items() if j.rpartition("#")[0] == job_prefix]
        return self.processes.get(ids[-1]) if ids else None

    # ------------------------------------------------------------------ time

    def sweep(self, now: float) -> None:
        """Apply ``maxexectime``/``maxwaittime`` and forget executors silent for too long."""
        waiting = {w.executor.id for w in self._waiters}
        for executor_id in waiting:
            self._seen[executor_id] = now
        for process in list(self.processes.values()):
            if process.state == "running" and process.deadline is not None \
                    and now >= process.deadline:
                who = process.executor.name if process.executor else "?"
                error = f"not closed within maxexectime {process.task.timeout_s:g}s by {who}"
                self._end(process, "failed", JobResult(Outcome.TIMEOUT, error=error),
                          errors=[error])
            elif process.state == "waiting" and process.maxwaittime is not None \
                    and now - process.since >= process.maxwaittime:
                error = (f"not assigned within maxwaittime {process.maxwaittime:g}s: "
                         f"{process.note or 'every executor of its type was busy'}")
                self._end(process, "failed", JobResult(Outcome.TIMEOUT, error=error),
                          errors=[error])
        for executor_id, seen in list(self._seen.items()):
            if now - seen > self.executor_timeout_s and executor_id not in waiting:
                self._forget(executor_id)
        self._update_notes()

    def _update_notes(self) -> None:
        """Say, for each waiting process, whether any registered executor can take it."""
        for process in self.processes.values():
            if process.state != "waiting" and process.note is None:
                continue
            note = None
            if process.state == "waiting" and not any(
                    _fits(info, process) for info in self.executors.values()):
                note = _unserved(process, self.executors.values())
            if note != process.note:
                process.note = note
                process.sink.job_status(process.task.id, "waitingfor", note)
                if note is not None:
                    wait = process.maxwaittime
                    until = f"up to maxwaittime {wait:g}s" if wait else "until one registers"
                    process.sink.job_log(process.task.id, "WARNING",
                                         f"process {process.id} waits: {note} ({until})")

    def _forget(self, executor_id: str) -> None:
        info = self.executors.pop(executor_id, None)
        self._seen.pop(executor_id, None)
        for process in self.processes.values():
            if process.state == "running" and process.executor is not None \
                    and process.executor.id == executor_id:
                log.warning("executor %s went silent; process %s goes back to the queue",
                            info.name if info else executor_id, process.id)
                process.state, process.executor, process.deadline = "waiting", None, None
                process.since = self.clock()
                self._offer(process)

    # ------------------------------------------------------------------ internals

    def _best(self, info: ExecutorInfo) -> Process | None:
        waiting = [p for p in self.processes.values() if p.state == "waiting" and _fits(info, p)]
        if not waiting:
            return None
        best = min(waiting, key=lambda p: (-p.priority, p.seq))
        self._start(best, info)
        return best

    def _offer(self, process: Process) -> None:
        for waiter in self._waiters:
            if not waiter.future.done() and _fits(waiter.executor, process):
                self._start(process, waiter.executor)
                waiter.future.set_result(process.id)
                return

    def _start(self, process: Process, info: ExecutorInfo) -> None:
        now = self.clock()
        process.state, process.executor = "running", info
        if process.note is not None:
            process.note = None
            process.sink.job_status(process.task.id, "waitingfor", None)
        timeout = process.task.timeout_s
        process.deadline = now + timeout if timeout else None
        process.sink.job_started(process.task.id, info.name, "external")

    def _owned(self, process_id: str, executor_id: str) -> Process:
        info = self.executor(executor_id)
        process = self.process(process_id)
        if process.state != "running":
            raise ColonyError(409, f"process {process_id} is {process.state}, not running; "
                                   "it cannot be changed any more")
        if process.executor is None or process.executor.id != info.id:
            raise ColonyError(403, f"process {process_id} is assigned to another executor")
        return process

    def _end(self, process: Process, state: str, result: JobResult, *, output: Any = None,
             errors: list[str] | None = None) -> None:
        process.state, process.output = state, output
        process.errors = list(errors or [])
        process.sink.job_finished(process.task.id, result)


def _fits(info: ExecutorInfo, process: Process) -> bool:
    return info.type == process.executortype and (
        not info.functions or process.funcname in info.functions)


def _unserved(process: Process, executors: Any) -> str:
    same_type = [info for info in executors if info.type == process.executortype]
    if not same_type:
        return f"no executor of type {process.executortype!r} is registered"
    return (f"no executor of type {process.executortype!r} offers function "
            f"{process.funcname!r}")
