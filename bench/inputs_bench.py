"""W5 (dirwatcher) and W6 (netwatcher) of BENCHMARKS.md, printed as one table.

    .venv/bin/python bench/inputs_bench.py            # full sizes
    .venv/bin/python bench/inputs_bench.py --quick    # small sizes, to check it still works
    .venv/bin/python bench/inputs_bench.py --only w6  # one of the two workloads

Both load a real graph (input node + one ``trivial`` node) with the graph loader and run
the real input modules through the head's InputRunner, with every pebble committed to
SQLite (WAL, synchronous=NORMAL). Workers are paused, so the figures are the intake
path alone: file or post in, pebble committed.

- W5: files are written as fast as possible, then each one's latency is the time from
  its last write + ``stabilize`` to its pebble's commit ("beyond stabilize"). Also: one
  file at a time, and a burst in which the head's loop latency is sampled every 50 ms.
- W6: the head runs in a child process; N posts (1 KB JSON bodies, a schema, a token,
  an Idempotency-Key each) come from 1, 8 and 32 threads, each with one keep-alive
  ``http.client`` connection. The 32-client round runs three times, each followed by
  the same round against the same netwatcher with no head behind it (a second child);
  the ratio printed is the median of the three pairs. After the last round the head is
  stopped and its store is read: every 202 id must be a pebble holding that post's
  ``probe_id``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryoflow.daemon.inputs import InputRunner  # noqa: E402
from cryoflow.graph.loader import load_graph  # noqa: E402
from cryoflow.graph.model import Graph, Node, WorkerClass  # noqa: E402
from cryoflow.head import Head  # noqa: E402
from cryoflow.store import Store  # noqa: E402
from cryoflow.store.reader import StoreReader  # noqa: E402
from cryoflow.workers.inline import InlineExecutor  # noqa: E402

TOKEN = "bench-token-0123456789"
SCHEMA = {"type": "object", "required": ["probe_id"],
          "properties": {"probe_id": {"type": "string"}, "pad": {"type": "string"}}}
Row = tuple[str, str, str]


def input_graph(node: dict[str, Any], x_ref: str) -> Graph:
    """An input node followed by one ``trivial`` node reading ``x_ref``."""
    work = {"name": "Work", "module": "trivial", "downstreamOf": [node["name"]],
            "args": {"x": {"output": x_ref, "default": 0}}}
    data = {"workflow": {"name": "bench-inputs", "nodes": [node, work]}}
    return load_graph(data, module_paths=[ROOT / "bench" / "modules"])


class HeadThread:
    """A head with paused workers and its input modules, on a loop in a thread."""

    def __init__(self, g: Graph, state: Path) -> None:
        self.graph, self.state = g, state
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reader: StoreReader | None = None
        self._ready, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    def __enter__(self) -> HeadThread:
        self._thread.start()
        assert self._ready.wait(30), "the head did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        with Store.open(self.state, workflow=self.graph.name) as store:
            head = Head(self.graph, store=store,
                        executor=InlineExecutor(slots={WorkerClass.NORMAL: 0}))
            await head.start()
            inputs = InputRunner(head, self.graph, {}, {})
            inputs.start(self.loop)
            self.reader = store.reader()
            self._ready.set()
            await asyncio.to_thread(self._stop.wait)
            await asyncio.to_thread(inputs.stop)
            await head.stop()

    def pebbles(self) -> list[dict[str, Any]]:
        assert self.reader is not None
        return self.reader.pebbles(limit=10_000_000)

    def loop_latency_s(self) -> float:
        """Round trip of a no-op through the head's loop (its responsiveness)."""
        assert self.loop is not None
        start = time.perf_counter()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(30)
        return time.perf_counter() - start


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s}s")
        time.sleep(0.02)


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f}"


# ---------------------------------------------------------------------- W5


def w5_burst(tmp: Path, count: int, stabilize_s: float) -> list[Row]:
    """``count`` files written at once: latency beyond stabilize, loop latency, exactness."""
    src = tmp / f"w5-{count}"
    src.mkdir()
    node = {"name": "In", "module": "dirwatcher",
            "args": {"src": str(src), "stabilize": stabilize_s}}
    written: dict[str, float] = {}
    loop_lat: list[float] = []
    with HeadThread(input_graph(node, "In.datasize"), tmp / f"state-w5-{count}") as head:
        for index in range(count):
            path = src / f"file{index:06}.dat"
            path.write_bytes(b"x" * 1024)
            written[path.name] = time.time()
        deadline = time.monotonic() + 120 + stabilize_s
        while len(head.pebbles()) < count and time.monotonic() < deadline:
            loop_lat.append(head.loop_latency_s())
            time.sleep(0.05)
        time.sleep(2 * stabilize_s)  # anything offered twice would show up by now
        pebbles = head.pebbles()
    beyond = [p["created"] - written[p["item"]["relpath"]] - stabilize_s for p in pebbles]
    names = {p["item"]["relpath"] for p in pebbles}
    check = "ok" if len(pebbles) == count == len(names) else (
        f"FAIL: {len(names)} of {count} files, {len(pebbles) - len(names)} twice")
    return [(f"W5 {count} files, beyond stabilize {stabilize_s:g}s", "median / p99 / max ms",
             f"{ms(beyond, 0.5)} / {ms(beyond, 0.99)} / {ms(beyond, 1.0)}"),
            (f"W5 {count} files, head loop latency meanwhile", "median / max ms",
             f"{ms(loop_lat, 0.5)} / {ms(loop_lat, 1.0)}" if loop_lat else "-"),
            (f"W5 {count} files, exactly once", "check", check)]


def w5_single(tmp: Path, count: int, stabilize_s: float) -> list[Row]:
    """Files written one at a time, each waited for: latency beyond stabilize."""
    src = tmp / "w5-single"
    src.mkdir()
    node = {"name": "In", "module": "dirwatcher",
            "args": {"src": str(src), "stabilize": stabilize_s}}
    beyond = []
    with HeadThread(input_graph(node, "In.datasize"), tmp / "state-w5-single") as head:
        for index in range(count):
            (src / f"one{index}.dat").write_bytes(b"y" * 4096)
            written = time.time()
            wait_until(lambda n=index: len(head.pebbles()) > n, 30 + stabilize_s)
            beyond.append(head.pebbles()[-1]["created"] - written - stabilize_s)
    return [(f"W5 single files ({count}), beyond stabilize", "median / max ms",
             f"{ms(beyond, 0.5)} / {ms(beyond, 1.0)}")]


# ---------------------------------------------------------------------- W6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(state: Path, port: int) -> None:
    """The child process of W6: a head with a netwatcher until SIGTERM."""
    node = {"name": "In", "module": "netwatcher",
            "args": {"port": port, "token": TOKEN, "schema": {"default": SCHEMA},
                     "max_pending": 10_000_000}}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with HeadThread(input_graph(node, "In.n"), state):
        print("READY", flush=True)
        stop.wait()


class NullIntake:
    """An input handler that commits nothing: every offer gets the next id at once."""

    def __init__(self) -> None:
        self.node = Node(name="In", module="netwatcher", is_input=True)
        self.head = SimpleNamespace(  # the HeadPort a watcher asks
            accepting=True, unfinished=0, node_order=("In",),
            status_value=lambda channel, param: None, has_seen=lambda key: False,
            pebble=lambda pebble_id: None, failpoint=lambda name: None, release=lambda: None)
        self._ids = itertools.count(1)

    def submit(self, item: Any, *, idem_key: str | None = None,
               seen_key: str | None = None) -> Future[int]:
        future: Future[int] = Future()
        future.set_result(next(self._ids))
        return future


def serve_null(port: int) -> None:
    """The reference child of W6: the same netwatcher, with no head behind it."""
    from cryoflow.watch.netwatch import NetwatchConfig, NetWatcher

    args = {"port": port, "token": TOKEN, "schema": SCHEMA, "max_pending": 10_000_000}
    watcher = NetWatcher(NetwatchConfig.from_args("In", args, {}), NullIntake())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("READY", flush=True)
    watcher.run(stop)


@contextmanager
def server(state: Path | None) -> Iterator[tuple[int, psutil.Process]]:
    """A child process serving W6 (a head, or with ``state`` None the null reference)."""
    port = free_port()
    mode = ["--serve", str(state)] if state is not None else ["--serve-null"]
    child = subprocess.Popen([sys.executable, __file__, *mode, str(port)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "READY"
        wait_until(lambda: _accepts(port), 30)
        yield port, psutil.Process(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(60)
        if child.stdout is not None:
            child.stdout.close()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def post_loop(port: int, keys: list[str], ledger: dict[str, int], latencies: list[float],
              errors: list[int]) -> None:
    """One client thread: one keep-alive connection, one post per key."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    for key in keys:
        body = json.dumps({"probe_id": key, "pad": "p" * 960})
        start = time.perf_counter()
        conn.request("POST", "/task", body, {**headers, "Idempotency-Key": key})
        response = conn.getresponse()
        data = response.read()
        latencies.append(time.perf_counter() - start)
        if response.status == 202:
            ledger[key] = json.loads(data)["id"]
        else:
            errors.append(response.status)
    conn.close()


def cpu_s(process: psutil.Process | None = None) -> float:
    """CPU seconds (user + system) of ``process``, or of this process."""
    times = (process or psutil.Process()).cpu_times()
    return float(times.user + times.system)


@dataclass(frozen=True)
class Round:
    """What one W6 round measured."""

    rate: float
    p50_ms: str
    p99_ms: str
    errors: int
    server_us: float
    client_us: float

    def rows(self, name: str) -> list[Row]:
        return [(name, "posts/s | p50 / p99 ms | non-2xx",
                 f"{self.rate:,.0f} | {self.p50_ms} / {self.p99_ms} | {self.errors}"),
                (name, "CPU us per post: server process | clients",
                 f"{self.server_us:.0f} | {self.client_us:.0f}")]


def w6_round(port: int, server_process: psutil.Process, clients: int, total: int, tag: str,
             ledger: dict[str, int]) -> Round:
    keys = [f"{tag}-{n}" for n in range(total)]
    latencies: list[float] = []
    errors: list[int] = []
    threads = [threading.Thread(target=post_loop,
                                args=(port, keys[i::clients], ledger, latencies, errors))
               for i in range(clients)]
    server_cpu, client_cpu, start = cpu_s(server_process), cpu_s(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    server_cpu, client_cpu = cpu_s(server_process) - server_cpu, cpu_s() - client_cpu
    return Round((total - len(errors)) / wall, ms(latencies, 0.5),
                 ms(latencies, 0.99), len(errors), 1e6 * server_cpu / total,
                 1e6 * client_cpu / total)


def w6(tmp: Path, sizes: list[tuple[int, int]], repeats: int) -> list[Row]:
    """The smaller sizes once; the last one ``repeats`` times, each head round followed
    by a round against the same netwatcher with no head behind it (both servers run the
    whole time, so the pairs see the same machine); the ratio is the median of the pairs."""
    state = tmp / "state-w6"
    ledger: dict[str, int] = {}
    rows: list[Row] = []
    pairs: list[tuple[Round, Round]] = []
    with server(state) as (port, head), server(None) as (null_port, null):
        post_loop(port, ["warm-up"], ledger, [], [])
        post_loop(null_port, ["warm-up"], {}, [], [])
        for clients, total in sizes[:-1]:
            rows += w6_round(port, head, clients, total, f"c{clients}", ledger).rows(
                f"W6 {total} posts, {clients} client(s)")
        clients, total = sizes[-1]
        for attempt in range(repeats):
            pairs.append((w6_round(port, head, clients, total, f"r{attempt}", ledger),
                          w6_round(null_port, null, clients, total, f"n{attempt}", {})))
    with Store.open(state, workflow="bench-inputs") as store:
        stored = {p["item"]["probe_id"]: p["id"] for p in store.pebbles(limit=10_000_000)}
    pairs.sort(key=lambda pair: pair[0].rate / pair[1].rate)
    median_head, median_null = pairs[len(pairs) // 2]
    name = f"W6 {total} posts, {clients} clients"
    rows += median_head.rows(f"{name} (median pair)")
    rows += median_null.rows(f"ref: {name}, no head behind it")
    ratios = " ".join(f"{h.rate / n.rate:.2f}" for h, n in pairs)
    rows.append((name, f"head / no head, median of {repeats} pairs (all)",
                 f"{median_head.rate / median_null.rate:.2f}x ({ratios})"))
    lost = [k for k, pebble_id in ledger.items() if stored.get(k) != pebble_id]
    extra = len(stored) - len(ledger)
    check = "ok" if not lost and extra == 0 else f"FAIL: {len(lost)} lost, {extra} extra"
    rows.append((f"W6 ledger: {len(ledger)} ids answered 202", "every 202 is a pebble", check))
    return rows


# ---------------------------------------------------------------------- main


def print_table(rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", choices=("w5", "w6"), help="run one workload")
    parser.add_argument("--serve", nargs=2, metavar=("STATE", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-null", metavar="PORT", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    if args.serve_null:
        serve_null(args.serve_null)
        return
    quick = args.quick
    stabilize = 0.5 if quick else 1.0
    rows: list[Row] = [("workload", "measure", "value")]
    with tempfile.TemporaryDirectory(prefix="cryoflow-inputs-bench-") as name:
        tmp = Path(name)
        if args.only != "w6":
            rows += w5_single(tmp, 3 if quick else 10, stabilize)
            rows += w5_burst(tmp, 200 if quick else 1000, stabilize)
            rows += w5_burst(tmp, 1000 if quick else 10_000, stabilize)
        if args.only != "w5":
            rows += w6(tmp, [(1, 300), (8, 1000), (32, 1000)] if quick
                       else [(1, 2000), (8, 10_000), (32, 10_000)], 3)
    print(f"\ncryoflow inputs bench ({'quick' if quick else 'full'}, {os.cpu_count()} CPUs)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
