"""ColonyOS parity: submit/get, external executors over REST, output→input, growing graphs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import flows
import pytest
from aiohttp import web
from enginekit import graph, node

from cryoflow import Workflow
from cryoflow.api.auth import Tokens
from cryoflow.api.server import build_app, build_context
from cryoflow.cli import main as cli
from cryoflow.colony.executor import ExecutorClient
from cryoflow.colony.queue import ColonyQueue
from cryoflow.colony.routes import install
from cryoflow.colony.service import ColonyService
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.head import Head
from cryoflow.pyapi.records import RunStatus
from cryoflow.store import Store
from cryoflow.workers.base import JobResult, Task
from cryoflow.workers.inline import InlineExecutor
from cryoflow.workers.routing import RoutingExecutor

TYPE = "wf-executor"


def spec(name: str, func: str, *deps: str, **keys: Any) -> dict[str, Any]:
    return {"nodename": name, "funcname": func,
            "conditions": {"executortype": TYPE, "dependencies": list(deps)}, **keys}


SUM_WF = [spec("gen_node", "gen"), spec("sum_node", "sum", "gen_node")]


@dataclass
class Colony:
    url: str
    session: aiohttp.ClientSession
    service: ColonyService
    head: Any = None

    @property
    def queue(self) -> ColonyQueue:
        return self.service.queue

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body) as r:
            return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path) as r:
            return r.status, await r.json()

    async def submit(self, specs: list[dict[str, Any]]) -> str:
        status, body = await self.post("api/v1/workflows", {"functionspecs": specs})
        assert status == 201, body
        return str(body["workflowid"])

    async def register(self, name: str = "e1", **keys: Any) -> str:
        status, body = await self.post("api/v1/executors", {"name": name, "type": TYPE, **keys})
        assert status == 201
        return str(body["executorid"])

    async def assign(self, executor: str, timeout: float = 5) -> Any:
        status, body = await self.post(f"api/v1/executors/{executor}/assign",
                                       {"timeout": timeout})
        assert status == 200, body
        return body["process"]

    async def close(self, executor: str, process: Any, output: Any) -> tuple[int, Any]:
        return await self.post(f"api/v1/processes/{process['processid']}/close",
                               {"executorid": executor, "output": output})

    async def workflow(self, workflow_id: str) -> Any:
        return (await self.get(f"api/v1/workflows/{workflow_id}"))[1]

    async def ended(self, workflow_id: str) -> Any:
        async def done() -> bool:
            return (await self.workflow(workflow_id))["state"] != "running"

        await until(done)
        return await self.workflow(workflow_id)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "the condition did not become true in time"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def colony(state: Path, g: Any = None) -> AsyncIterator[Colony]:
    """A head (with an input node only) serving the colony routes on 127.0.0.1."""
    g = g or graph(node("In", module="cmdline"))
    store = Store.open(state, workflow=g.name)
    queue = ColonyQueue()
    head = Head(g, store=store, executor=RoutingExecutor(InlineExecutor(), external=queue))
    await head.start()
    context = build_context(head, Tokens())
    app = build_app(context)
    service = install(app, context, queue=queue)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession()
    try:
        yield Colony(f"http://127.0.0.1:{port}/", session, service, head)
    finally:
        await session.close()
        await runner.cleanup()
        await head.stop()
        store.close()


def run(test: Callable[[Colony], Awaitable[None]], state: Path, g: Any = None) -> None:
    async def go() -> None:
        async with colony(state, g) as c:
            await asyncio.wait_for(test(c), 30)

    asyncio.run(go())


def test_a_function_spec_workflow_is_submitted_and_get_shows_every_process(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        workflow_id = await c.submit(SUM_WF)
        view = await c.workflow(workflow_id)
        assert view["state"] == "running"
        processes = {p["nodename"]: p for p in view["processes"]}
        assert processes["gen_node"]["executortype"] == TYPE
        assert processes["sum_node"]["waitingforparents"] is True
        assert processes["sum_node"]["dependencies"] == ["gen_node"]
        assert Path(view["statedir"], "state.db").exists()

    run(test, tmp_path)


def test_an_invalid_spec_is_refused_with_every_problem(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        status, body = await c.post("api/v1/workflows", {"spec": [spec("a", "f", "nope")]})
        assert status == 400 and "'nope'" in body["problems"][0]

    run(test, tmp_path)


def test_an_executor_registers_long_polls_assign_and_closes_with_output(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register(functions=["gen", "sum"])
        started = time.monotonic()
        assert await c.assign(executor, timeout=0.3) is None
        assert time.monotonic() - started >= 0.3
        workflow_id = await c.submit(SUM_WF)
        gen = await c.assign(executor)
        assert (gen["funcname"], gen["input"]) == ("gen", [])
        assert (await c.close(executor, gen, [1, 2, 3]))[0] == 200
        total = await c.assign(executor)
        assert (total["funcname"], total["input"]) == ("sum", [1, 2, 3])
        await c.close(executor, total, [6])
        view = await c.ended(workflow_id)
        assert view["state"] == "successful"
        assert [p["output"] for p in view["processes"]] == [[1, 2, 3], [6]]

    run(test, tmp_path)


def test_a_long_poll_is_answered_as_soon_as_a_process_arrives(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        waiting = asyncio.ensure_future(c.assign(executor, timeout=20))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await c.submit(SUM_WF)
        assert (await waiting)["nodename"] == "gen_node"
        assert time.monotonic() - started < 5

    run(test, tmp_path)


def test_fail_ends_a_process_with_its_errors_and_its_dependents_never_start(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        workflow_id = await c.submit(SUM_WF)
        gen = await c.assign(executor)
        status, _ = await c.post(f"api/v1/processes/{gen['processid']}/fail",
                                 {"executorid": executor, "errors": ["disk full"]})
        assert status == 200
        view = await c.ended(workflow_id)
        assert view["state"] == "failed"
        assert [(p["state"], p["errors"]) for p in view["processes"]] == [
            ("failed", ["disk full"]), ("failed", [])]
        assert await c.assign(executor, timeout=0.2) is None

    run(test, tmp_path)


def test_only_the_assigned_executor_may_close_a_process(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        owner, other = await c.register("owner"), await c.register("other")
        await c.submit(SUM_WF)
        gen = await c.assign(owner)
        status, body = await c.close(other, gen, [1])
        assert status == 403 and "another executor" in body["error"]
        assert (await c.close("f" * 32, gen, [1]))[0] == 404
        assert (await c.close(owner, gen, [1]))[0] == 200
        assert (await c.close(owner, gen, [1]))[0] == 409

    run(test, tmp_path)


def test_a_process_not_closed_within_maxexectime_is_requeued_up_to_maxretries(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        workflow_id = await c.submit([spec("slow", "gen", maxexectime=30, maxretries=1)])
        first = await c.assign(executor)
        c.queue.sweep(time.time() + 31)
        second = await c.assign(executor)
        assert second["nodename"] == "slow" and second["processid"] != first["processid"]
        c.queue.sweep(time.time() + 31)
        view = await c.ended(workflow_id)
        assert view["state"] == "failed"
        assert "not closed within maxexectime 30s" in view["processes"][0]["errors"][0]
        assert await c.assign(executor, timeout=0.2) is None

    run(test, tmp_path)


def test_an_executor_silent_past_the_deadline_loses_its_processes_to_the_queue(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        silent = await c.register("silent")
        await c.submit(SUM_WF)
        gen = await c.assign(silent)
        c.queue.sweep(time.time() + c.queue.executor_timeout_s + 1)
        awake = await c.register("awake")
        again = await c.assign(awake)
        assert again["processid"] == gen["processid"]
        assert again["assignedexecutor"] == "awake"
        assert (await c.close(silent, gen, [1]))[0] == 404

    run(test, tmp_path)


def test_a_nodes_input_is_its_parents_outputs_joined_in_dependency_order(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        await c.submit([spec("a", "f"), spec("b", "f"), spec("c", "f", "b", "a")])
        for _ in range(2):
            process = await c.assign(executor)
            await c.close(executor, process, [process["nodename"].upper()] * (
                2 if process["nodename"] == "b" else 1))
        last = await c.assign(executor)
        assert (last["nodename"], last["input"]) == ("c", ["B", "B", "A"])

    run(test, tmp_path)


def test_a_running_process_adds_a_child_over_the_executor_api(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        workflow_id = await c.submit(SUM_WF)
        gen = await c.assign(executor)
        status, _ = await c.post(f"api/v1/processes/{gen['processid']}/children",
                                 {"executorid": executor, "spec": spec("extra", "more")})
        assert status == 201
        await c.close(executor, gen, [5])
        names = set()
        for _ in range(2):
            process = await c.assign(executor)
            names.add(process["nodename"])
            assert process["input"] == [5]
            await c.close(executor, process, [])
        assert names == {"sum_node", "extra"}
        view = await c.ended(workflow_id)
        assert view["state"] == "successful"
        assert view["processes"][-1]["dependencies"] == ["gen_node"]

    run(test, tmp_path)


def test_an_inserted_process_sits_between_the_process_and_its_children(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        workflow_id = await c.submit(SUM_WF)
        gen = await c.assign(executor)
        status, _ = await c.post(f"api/v1/processes/{gen['processid']}/children",
                                 {"executorid": executor, "spec": spec("mid", "double"),
                                  "insert": True})
        assert status == 201
        await c.close(executor, gen, [1, 2])
        mid = await c.assign(executor)
        assert (mid["nodename"], mid["input"]) == ("mid", [1, 2])
        await c.close(executor, mid, [2, 4])
        total = await c.assign(executor)
        assert (total["nodename"], total["input"]) == ("sum_node", [2, 4])
        await c.close(executor, total, [6])
        view = await c.ended(workflow_id)
        deps = {p["nodename"]: p["dependencies"] for p in view["processes"]}
        assert deps == {"gen_node": [], "mid": ["gen_node"], "sum_node": ["mid"]}

    run(test, tmp_path)


def test_growth_that_would_close_a_cycle_or_reuse_a_name_is_refused(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        await c.submit(SUM_WF)
        gen = await c.assign(executor)
        path = f"api/v1/processes/{gen['processid']}/children"
        status, body = await c.post(path, {"executorid": executor, "insert": True,
                                           "spec": spec("loop", "f", "sum_node")})
        assert status == 409 and "cycle" in body["error"]
        status, body = await c.post(path, {"executorid": executor,
                                           "spec": spec("sum_node", "f")})
        assert status == 409 and "already a node 'sum_node'" in body["error"]

    run(test, tmp_path)


def test_a_whole_workflow_run_is_cancelled(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        workflow_id = await c.submit(SUM_WF)
        gen = await c.assign(executor)
        status, view = await c.post(f"api/v1/workflows/{workflow_id}/cancel", {})
        assert status == 200
        view = await c.ended(workflow_id)
        assert view["state"] == "cancelled"
        assert (await c.close(executor, gen, [1]))[0] == 409
        assert await c.assign(executor, timeout=0.2) is None

    run(test, tmp_path)


def test_priorities_from_the_spec_are_honoured(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        executor = await c.register()
        workflow_id = await c.submit([spec("low", "f", priority=1), spec("high", "f", priority=9),
                                      spec("mid", "f", priority=5)])

        async def all_queued() -> bool:
            view = await c.workflow(workflow_id)
            return all(p["processid"] for p in view["processes"])

        await until(all_queued)
        order = []
        for _ in range(3):
            process = await c.assign(executor)
            order.append(process["nodename"])
            await c.close(executor, process, [])
        assert order == ["high", "mid", "low"]

    run(test, tmp_path)


def test_the_python_executor_client_runs_the_whole_loop(tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        stop = threading.Event()

        def gen(process: Any) -> list[int]:
            return [1, 2, 3]

        def total(process: Any) -> list[int]:
            return [sum(process["input"])]

        client = ExecutorClient(c.url, type=TYPE, name="py-1")
        serving = asyncio.ensure_future(asyncio.to_thread(
            client.serve, {"gen": gen, "sum": total}, stop=stop, timeout_s=0.2))
        try:
            view = await c.ended(await c.submit(SUM_WF))
        finally:
            stop.set()
            await serving
        assert view["state"] == "successful" and view["processes"][1]["output"] == [6]

    run(test, tmp_path)


def test_cryoflow_submit_and_get_talk_to_a_running_head(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = tmp_path / "sum_wf.json"
    spec_file.write_text(json.dumps(SUM_WF))

    async def test(c: Colony) -> None:
        code = await asyncio.to_thread(cli.main, ["submit", str(spec_file), "--url", c.url])
        assert code == 0
        workflow_id = capsys.readouterr().out.strip()
        assert await asyncio.to_thread(cli.main, ["get", workflow_id, "--url", c.url]) == 0
        text = capsys.readouterr().out
        assert "gen_node" in text and "sum_node" in text and "waitingforparents" in text
        assert await asyncio.to_thread(cli.main, ["cancel", workflow_id, "--url", c.url]) == 0
        assert await asyncio.to_thread(cli.main, ["get", "nope", "--url", c.url]) == 2
        assert "there is no workflow nope" in capsys.readouterr().err

    run(test, tmp_path / "state")


def test_a_function_spec_without_an_executor_type_runs_its_python_function(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        workflow_id = await c.submit([
            {"nodename": "gen_node", "funcname": "flows:gen"},
            {"nodename": "sum_node", "funcname": "flows:total",
             "conditions": {"dependencies": ["gen_node"]}}])
        view = await c.ended(workflow_id)
        assert view["state"] == "successful" and view["processes"][1]["output"] == [6]

    run(test, tmp_path)


def test_a_module_adds_a_child_to_its_own_pebble(tmp_path: Path) -> None:
    record = Workflow("g; after", g=flows.grow, after=flows.fa).run(inline=True,
                                                                     state_dir=tmp_path)
    assert record.status is RunStatus.FINISHED
    assert record.results == {"g": "grew", "after": 1, "extra": 1}
    assert record.nodes["extra"].dependencies == ("g",)


def test_a_module_inserts_a_node_between_itself_and_its_children(tmp_path: Path) -> None:
    record = Workflow("g; after", g=flows.grow_between, after=flows.fd).run(
        inline=True, state_dir=tmp_path)
    assert record.nodes["mid"].dependencies == ("g",)
    assert record.nodes["after"].dependencies == ("mid",)
    assert record.results["after"] == [2]


def test_a_module_asking_for_a_cycle_fails_with_the_reason(tmp_path: Path) -> None:
    record = Workflow("g; after", g=flows.grow_a_cycle, after=flows.fa).run(
        inline=True, state_dir=tmp_path)
    assert record.failed == ("g",) and record.never_started == ("after",)
    assert "add_child refused" in (record.nodes["g"].error or "")
    assert "cycle" in (record.nodes["g"].error or "")


class FakeExecutor:
    """One ``normal`` slot; remembers what it was given."""

    def __init__(self) -> None:
        self.running: list[str] = []

    async def start(self, sink: Any) -> None:
        self.sink = sink

    async def stop(self, timeout_s: float = 10.0) -> None:
        pass

    def capacity(self) -> dict[WorkerClass, int]:
        return {WorkerClass.NORMAL: 1}

    def free_slots(self) -> dict[WorkerClass, int]:
        return {WorkerClass.NORMAL: 1 - len(self.running)}

    def submit(self, task: Task) -> None:
        assert not self.running, "submitted to a full executor"
        self.running.append(task.id)

    def cancel(self, job_id: str, grace_s: float = 2.0) -> None:
        pass


class Sink:
    graph = None

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.events.append((name, args))


def test_external_jobs_never_wait_behind_local_ones_and_local_overflow_is_held() -> None:
    inner, queue, sink = FakeExecutor(), ColonyQueue(), Sink()
    routing = RoutingExecutor(inner, external=queue)
    asyncio.run(routing.start(sink))

    def task(job: str, executortype: str | None = None) -> Task:
        extra = {"executortype": executortype} if executortype else {}
        return Task(id=job, pebble_id=1, node=job.split("/")[1].split("#")[0], module="m",
                    module_ref=None, args={}, extra=extra)

    routing.submit(task("1/a#1"))
    assert routing.free_slots()[WorkerClass.NORMAL] == 1  # the spare slot
    routing.submit(task("1/b#1", TYPE))
    assert [p.task.id for p in queue.processes.values()] == ["1/b#1"]
    routing.submit(task("1/c#1"))  # taken through the spare slot: held
    assert inner.running == ["1/a#1"] and routing.free_slots()[WorkerClass.NORMAL] == 0
    inner.running.clear()
    inner.sink.job_finished("1/a#1", JobResult(Outcome.SUCCESS))
    assert inner.running == ["1/c#1"]
    assert ("job_finished", ("1/a#1", JobResult(Outcome.SUCCESS))) in sink.events


def test_a_process_of_an_unserved_type_says_so_in_the_api_status_and_log_then_times_out(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        lonely = {"nodename": "orphan", "funcname": "f", "maxwaittime": 3,
                  "conditions": {"executortype": "nobody"}}
        workflow_id = await c.submit([lonely])
        head = c.service.runs[workflow_id].head
        why = "no executor of type 'nobody' is registered"

        async def says_so() -> bool:
            [process] = (await c.workflow(workflow_id))["processes"]
            return bool(process["state"] == "waiting" and process["waitingfor"] == why)

        async def shown() -> bool:  # what the web view and ccstatus read
            logged = any(why in row["message"] and row["level"] == "WARNING"
                         for row in head.store.logs(node="orphan"))
            status = head.store.status_values("orphan") or {"orphan": {}}
            return logged and status["orphan"].get("waitingfor") == why

        await until(says_so)
        await until(shown)
        ended = await c.ended(workflow_id)
        assert ended["state"] == "failed"
        assert ended["processes"][0]["errors"] == [f"not assigned within maxwaittime 3s: {why}"]

    run(test, tmp_path)


def test_a_process_waiting_for_a_function_no_executor_offers_names_the_function(
        tmp_path: Path) -> None:
    async def test(c: Colony) -> None:
        await c.register(functions=["gen"])
        workflow_id = await c.submit([spec("odd", "mul")])

        async def says_so() -> bool:
            [process] = (await c.workflow(workflow_id))["processes"]
            return bool(process["waitingfor"])

        await until(says_so)
        [process] = (await c.workflow(workflow_id))["processes"]
        assert process["waitingfor"] == f"no executor of type {TYPE!r} offers function 'mul'"
        executor = await c.register("e2")
        taken = await c.assign(executor)
        assert taken["nodename"] == "odd" and taken["waitingfor"] is None
        await c.close(executor, taken, [1])
        assert (await c.ended(workflow_id))["state"] == "successful"

    run(test, tmp_path)


def test_stopping_the_server_answers_an_executors_long_poll_at_once(tmp_path: Path) -> None:
    from cryoflow.colony.server import ColonyServer

    server = ColonyServer(tmp_path / "served").start()
    client = ExecutorClient(str(server.url), type=TYPE, name="waiting")
    client.register()
    answers: list[Any] = []
    polling = threading.Thread(target=lambda: answers.append(client.assign(120)))
    polling.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    polling.join(30)
    assert answers == [None] and time.monotonic() - started < 10


def test_the_web_api_of_a_head_shows_why_its_external_node_waits(tmp_path: Path) -> None:
    from cryoflow.graph.funcspec import funcspec_graph
    from cryoflow.graph.model import ENTRY

    g = funcspec_graph([{"nodename": "orphan", "funcname": "f",
                         "conditions": {"executortype": "nobody"}}], name="waits")
    why = "no executor of type 'nobody' is registered"

    async def test(c: Colony) -> None:
        pebble = await c.head.offer(ENTRY, {})

        async def shown() -> bool:  # what the web view reads: status values and the log
            _, status = await c.get("api/v1/status")
            _, logs = await c.get(f"api/v1/logs?pebble={pebble}")
            return (status["status"].get("orphan", {}).get("waitingfor") == why
                    and any(why in row["message"] for row in logs["items"]))

        await until(shown)
        executor = await c.register("late", type="nobody")
        assert (await c.assign(executor))["nodename"] == "orphan"

        async def cleared() -> bool:
            _, status = await c.get("api/v1/status")
            return status["status"]["orphan"].get("waitingfor") is None

        await until(cleared)

    run(test, tmp_path, g)
