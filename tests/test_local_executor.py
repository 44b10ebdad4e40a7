"""LocalExecutor: real worker processes driven from an asyncio loop."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from executorkit import Sink

from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.workers.base import Task
from cryoflow.workers.local import LocalExecutor
from cryoflow.workers.wire import decode_task, encode_task

MODULES = Path(__file__).parent / "data" / "worker_modules"
T = TypeVar("T")

pytestmark = pytest.mark.timeout(60)


def task(module: str, job_id: str, args: dict[str, Any] | None = None, **fields: Any) -> Task:
    return Task(
        id=job_id,
        pebble_id=1,
        node="Node",
        module=module,
        module_ref=str(MODULES / f"{module}.py"),
        args=args or {},
        **fields,
    )


def run_with(body: Callable[[LocalExecutor, Sink], Awaitable[None]], **options: Any) -> None:
    """Start an executor (no admin worker unless asked), run ``body``, always stop it."""
    options.setdefault("workers", 1)
    options.setdefault("admin_workers", 0)

    async def main() -> None:
        executor, sink = LocalExecutor(**options), Sink()
        await executor.start(sink)
        try:
            await body(executor, sink)
        finally:
            await executor.stop(timeout_s=2.0)

    asyncio.run(main())


def processes_of(job_id: str) -> list[psutil.Process]:
    """Live processes whose environment names the job (a job's children inherit it)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and (
                process.environ().get("CRYOFLOW_JOB_ID") == job_id
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


async def wait_for_processes(job_id: str, count: int, timeout_s: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while len(found := processes_of(job_id)) < count:
        assert time.monotonic() < deadline, f"job {job_id} never had {count} processes"
        await asyncio.sleep(0.05)
    return found


def is_alive(pid: int) -> bool:
    """True for a running process (a zombie waiting for init to reap it is dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(processes: list[psutil.Process], timeout_s: float = 3.0) -> None:
    """Wait on a pidfd per process (readable once it has exited, zombie or reaped)."""
    pidfds = []
    for process in processes:
        try:
            pidfds.append(os.pidfd_open(process.pid))
        except ProcessLookupError:
            continue
    try:
        deadline = time.monotonic() + timeout_s
        pending = set(pidfds)
        while pending and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(pending), [], [], left)
            pending -= set(ready)
        assert not pending, f"{len(pending)} of {len(processes)} processes survived"
    finally:
        for fd in pidfds:
            os.close(fd)


def test_a_cryocloud_module_runs_unchanged_in_a_worker_process() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("cryocloud_wind", "w1", {"src": "/d/S1B_9.SAFE", "program": "p"}))
        result = await sink.result("w1")
        assert result.outcome is Outcome.SUCCESS, result.error
        assert result.retval["product"] == "S1B_9"
        assert sink.of("started", "w1") == [("normal-0", result.stats["node"])]
        assert ("progress", 100) in sink.of("status", "w1")

    run_with(body)


def test_status_and_log_messages_arrive_while_the_job_still_runs(tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_emit", "e1", {"gate": str(gate)}))
        await sink.until(lambda: ("progress", 10) in sink.of("status", "e1"), timeout_s=2)
        await sink.until(lambda: len(sink.of("log", "e1")) == 2, timeout_s=2)
        assert "e1" not in sink.ended
        assert sink.of("log", "e1") == [("INFO", "hello from Node"), ("WARNING", "careful")]
        gate.touch()
        result = await sink.result("e1")
        assert result.retval == {"job": "e1"}
        assert sink.of("status", "e1")[-1] == ("progress", 100)

    run_with(body)


def test_a_silent_job_is_reported_started_while_it_runs_and_a_trivial_one_before_its_end() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_sleep", "q1", {"seconds": 30, "quiet": True}))
        await sink.until(lambda: sink.of("started", "q1"), timeout_s=1)
        assert "q1" not in sink.ended
        executor.cancel("q1")
        await sink.result("q1")
        executor.submit(task("probe_noop", "n1"))
        await sink.result("n1")
        kinds = [event[0] for event in sink.events if event[1] == "n1"]
        assert kinds == ["started", "finished"]

    run_with(body)


def test_an_exception_in_a_worker_keeps_its_traceback_and_the_worker() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_raise", "r1"))
        failed = await sink.result("r1")
        executor.submit(task("probe_progress", "p1"))
        wrong = await sink.result("p1")
        assert (failed.outcome, failed.error) == (Outcome.ERROR, "ValueError: probe failure")
        assert "probe_raise.py" in failed.stats["traceback"]
        assert wrong.error == "module returned progress 42 (expected 100)"
        assert failed.stats["worker"] == wrong.stats["worker"] == "normal-0"

    run_with(body)


@pytest.mark.parametrize("trap", [False, True], ids=["plain", "children-trap-sigterm"])
def test_a_timeout_kills_the_process_group_with_its_grandchildren(trap: bool) -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        started = time.monotonic()
        executor.submit(task("probe_spawn", "t1", {"trap": trap}, timeout_s=1))
        children = await wait_for_processes("t1", 3)  # sh and its two sleeps
        worker = psutil.Process(children[0].ppid())
        result = await sink.result("t1")
        elapsed = time.monotonic() - started
        assert (result.outcome, result.error) == (Outcome.TIMEOUT, "timeout after 1s")
        assert 1.5 <= elapsed < 1 + 0.5 + 1.0
        assert_all_gone([*children, worker])
        assert processes_of("t1") == []
        assert executor.free_slots()[WorkerClass.NORMAL] == 1
        executor.submit(task("probe_noop", "after"))
        assert (await sink.result("after")).outcome is Outcome.SUCCESS

    run_with(body, kill_grace_s=0.5)


def test_a_job_that_honours_cancel_at_its_timeout_keeps_its_worker() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_sleep", "s1", {"seconds": 30}, timeout_s=0.3))
        result = await sink.result("s1")
        executor.submit(task("probe_sleep", "s2", {"seconds": 0}))
        again = await sink.result("s2")
        assert (result.outcome, result.error) == (Outcome.TIMEOUT, "timeout after 0.3s")
        assert result.retval["pid"] == again.retval["pid"]

    run_with(body, kill_grace_s=5)


def test_a_worker_killed_mid_job_is_reported_lost_and_replaced(tmp_path: Path) -> None:
    marker = tmp_path / "exec"

    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_sleep", "k1", {"seconds": 30, "marker": str(marker)}))
        await sink.until(lambda: sink.of("status", "k1"))
        pid = int(marker.read_text())
        os.killpg(pid, signal.SIGKILL)
        reason = await sink.until(lambda: sink.ended.get("k1"))
        assert reason == f"worker pid {pid} died with signal 9"
        await sink.until(lambda: executor.free_slots()[WorkerClass.NORMAL] == 1 or None)
        executor.submit(task("probe_sleep", "k2", {"seconds": 0}))
        result = await sink.result("k2")
        assert result.outcome is Outcome.SUCCESS and result.retval["pid"] != pid

    run_with(body)


def test_killing_only_the_worker_still_takes_the_jobs_children_down() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_spawn", "k3"))
        children = await wait_for_processes("k3", 3)
        worker = children[0].ppid()
        os.kill(worker, signal.SIGKILL)
        assert await sink.until(lambda: sink.ended.get("k3")) == (
            f"worker pid {worker} died with signal 9"
        )
        assert_all_gone(children)

    run_with(body)


def test_a_task_crosses_the_pipe_as_json_without_its_default_fields() -> None:
    plain = task("probe_noop", "p", {"a": [1, 2]})
    full = Task(
        **{
            **plain.__dict__,
            "worker_class": WorkerClass.GPU,
            "files": {"a": {"type": "dir"}},
            "post": ({"output": "a", "target": "/t"},),
            "volumes": (("/a", "/b", "ro"),),
            "module_paths": ("/m",),
            "timeout_s": 2.5,
        }
    )
    wire = json.loads(encode_task(plain))
    assert set(wire) == {"id", "pebble_id", "node", "module", "module_ref", "args"}
    assert decode_task(wire) == plain
    assert decode_task(json.loads(encode_task(full))) == full


def test_a_worker_speaks_one_json_message_each_way_and_refuses_unreadable_tasks() -> None:
    parent, child = socket.socketpair()
    with child:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cryoflow.workers.process",
                str(child.fileno()),
                "raw-0",
                str(os.getpid()),
            ],
            pass_fds=(child.fileno(),),
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
    conn = Connection(parent.detach())

    def receive() -> dict[str, Any]:
        assert conn.poll(10), "the worker did not answer"
        return dict(json.loads(conn.recv_bytes()))

    try:
        assert receive()["op"] == "ready"
        conn.send_bytes(encode_task(task("probe_noop", "ok", {"a": 1})))
        reply = receive()
        assert (reply["op"], reply["outcome"], reply["retval"]) == ("finished", "success", {"a": 1})
        assert reply["announce"] is True
        conn.send_bytes(b'{"id":"odd","pebble_id":1,"node":"n","module":"m","args":{},"hue":1}')
        reply = receive()
        assert (reply["job_id"], reply["outcome"]) == ("odd", "error")
        assert "the worker could not read the task: TypeError" in reply["error"]
    finally:
        conn.close()
        worker.wait(timeout=10)


def test_cancel_ends_a_cooperative_job_as_cancel() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_sleep", "c1", {"seconds": 30}))
        await sink.until(lambda: sink.of("status", "c1"))
        executor.cancel("c1", grace_s=10)
        result = await sink.result("c1", timeout_s=5)
        assert result.outcome is Outcome.CANCEL and result.error is None

    run_with(body)


def test_cancel_kills_a_job_that_ignores_it_once_the_grace_is_over() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_spawn", "c2"))
        children = await wait_for_processes("c2", 3)
        executor.cancel("c2", grace_s=0.2)
        result = await sink.result("c2", timeout_s=5)
        assert result.outcome is Outcome.CANCEL
        assert result.error == "cancelled; the job was killed after a grace of 0.2s"
        assert_all_gone(children)

    run_with(body)


def test_a_worker_is_recycled_after_max_jobs_per_worker() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        pids = []
        for n in range(3):
            executor.submit(task("probe_sleep", f"j{n}", {"seconds": 0}))
            pids.append((await sink.result(f"j{n}")).retval["pid"])
        assert pids[0] == pids[1] != pids[2]
        assert not is_alive(pids[0])

    run_with(body, max_jobs_per_worker=2)


def test_a_worker_is_recycled_when_its_memory_grows_past_the_limit() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_env", "m0", {"name": "HOME"}))
        small = (await sink.result("m0")).retval["pid"]
        executor.submit(task("probe_alloc", "m1", {"mb": 120}))
        await sink.result("m1")
        executor.submit(task("probe_env", "m2", {"name": "HOME"}))
        fresh = (await sink.result("m2")).retval["pid"]
        assert fresh != small

    run_with(body, max_worker_memory_mb=100)


def test_flooding_stdout_is_capped_and_the_worker_survives() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_flood", "f1", {"mb": 3}))
        result = await sink.result("f1")
        executor.submit(task("probe_env", "f2", {"name": "HOME"}))
        after = await sink.result("f2")
        logs = sink.of("log", "f1")
        assert result.outcome is Outcome.SUCCESS
        assert sum(len(message) for _, message in logs) <= (1 << 20) + 100
        assert logs[-1][0] == "WARNING" and "bytes of log output dropped" in logs[-1][1]
        assert after.stats["worker"] == result.stats["worker"]

    run_with(body)


def test_printed_output_becomes_log_lines_of_the_job() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_flood", "o1", {"mb": 0}))
        await sink.result("o1")
        assert sink.of("log", "o1") == [("INFO", "python-level line"), ("WARNING", "to stderr")]

    run_with(body)


def test_gpu_workers_each_see_their_own_device() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        assert executor.capacity() == {"normal": 0, "admin": 0, "gpu": 2}
        for n in range(2):
            gpu_task = task("probe_env", f"g{n}", {"name": "CUDA_VISIBLE_DEVICES"})
            executor.submit(Task(**{**gpu_task.__dict__, "worker_class": WorkerClass.GPU}))
        seen = {(await sink.result(f"g{n}")).retval["value"] for n in range(2)}
        assert seen == {"0", "1"}

    run_with(body, workers=0, gpus=2)


def test_submit_without_an_idle_worker_of_the_class_is_refused() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        assert executor.free_slots() == {"normal": 1, "admin": 0, "gpu": 0}
        with pytest.raises(ValueError, match="no idle admin worker"):
            executor.submit(Task(**{**task("probe_noop", "a").__dict__, "worker_class": "admin"}))
        executor.submit(task("probe_sleep", "busy", {"seconds": 30}))
        with pytest.raises(ValueError, match="no idle normal worker"):
            executor.submit(task("probe_noop", "b"))

    run_with(body)


def test_stop_leaves_no_worker_process_and_reports_running_jobs_lost() -> None:
    pids: list[int] = []
    sink = Sink()

    async def main() -> None:
        executor = LocalExecutor(workers=2, admin_workers=1)
        await executor.start(sink)
        executor.submit(task("probe_spawn", "s1"))
        children = await wait_for_processes("s1", 3)
        pids.extend(p.pid for p in children)
        pids.extend(p.pid for p in psutil.Process().children()
                    if "cryoflow.workers.process" in " ".join(p.cmdline()))
        await executor.stop(timeout_s=0.5)

    asyncio.run(main())
    assert len(pids) >= 6  # the job's three processes and the three workers
    assert [pid for pid in pids if is_alive(pid)] == []
    assert isinstance(sink.ended["s1"], str) and "executor stopped" in sink.ended["s1"]


HEAD = """
import asyncio, sys
from cryoflow.workers.local import LocalExecutor
from cryoflow.workers.wire import decode_task, encode_task
from cryoflow.workers.base import Task

class Sink:
    def __getattr__(self, name):
        return lambda *args: None

async def main():
    executor = LocalExecutor(workers=1, admin_workers=0)
    await executor.start(Sink())
    executor.submit(Task(id="orphan", pebble_id=1, node="n", module="probe_spawn",
                         module_ref=sys.argv[1], args={}))
    print("running", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_workers_and_their_children_die_with_a_killed_head(tmp_path: Path) -> None:
    script = tmp_path / "head.py"
    script.write_text(textwrap.dedent(HEAD))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    head = subprocess.Popen(
        [sys.executable, str(script), str(MODULES / "probe_spawn.py")],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert head.stdout is not None and head.stdout.readline() == b"running\n"
        children = asyncio.run(wait_for_processes("orphan", 3))
        workers = psutil.Process(head.pid).children()
        head.kill()
        head.wait()
        assert_all_gone([*children, *workers])
    finally:
        head.kill()
        head.wait()
        if head.stdout:
            head.stdout.close()


# Jobs sent ahead (prefetch)


def test_a_busy_worker_takes_one_job_ahead_and_runs_it_next() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_sleep", "a", {"seconds": 0.3}))
        assert executor.free_slots()[WorkerClass.NORMAL] == 1
        executor.submit(task("probe_noop", "b"))
        assert executor.free_slots()[WorkerClass.NORMAL] == 0
        first, second = await sink.result("a"), await sink.result("b")
        assert (first.outcome, second.outcome) == (Outcome.SUCCESS, Outcome.SUCCESS)
        finished = [e[1] for e in sink.events if e[0] == "finished"]
        assert finished == ["a", "b"]

    run_with(body, prefetch=1)


def test_a_job_cancelled_while_sent_ahead_ends_unrun() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_sleep", "a", {"seconds": 0.3}))
        executor.submit(task("probe_noop", "b"))
        executor.cancel("b")
        result = await sink.result("b")
        assert result.outcome is Outcome.CANCEL
        assert result.error == "cancelled before it started"
        assert (await sink.result("a")).outcome is Outcome.SUCCESS

    run_with(body, prefetch=1)


def test_jobs_sent_ahead_to_a_worker_that_dies_are_reported_lost() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        executor.submit(task("probe_sleep", "a", {"seconds": 30}))
        executor.submit(task("probe_noop", "b"))
        await sink.until(lambda: sink.of("started", "a"))
        os.killpg(executor._by_job["a"].pid, signal.SIGKILL)
        await sink.until(lambda: "a" in sink.ended and "b" in sink.ended)
        assert isinstance(sink.ended["a"], str) and isinstance(sink.ended["b"], str)
        assert "before the job started" in sink.ended["b"]

    run_with(body, prefetch=1)


def test_several_tasks_sent_in_one_message_run_in_order() -> None:
    async def body(executor: LocalExecutor, sink: Sink) -> None:
        assert executor.slots()[WorkerClass.NORMAL] == (1, 2)
        executor.submit_many([task("probe_noop", name) for name in ("a", "b", "c")])
        for name in ("a", "b", "c"):
            assert (await sink.result(name)).outcome is Outcome.SUCCESS
        assert [e[1] for e in sink.events if e[0] == "finished"] == ["a", "b", "c"]

    run_with(body, prefetch=2)
