"""cryoflow's benchmark suite: W1–W4 (bench/README.md) beside the references, one table.

    .venv/bin/python bench/run.py            # full sizes
    .venv/bin/python bench/run.py --quick    # small sizes, to check the suite still works

Every cryoflow figure commits every state change to SQLite (WAL, synchronous=NORMAL)
and runs its jobs in 2 local worker processes. W1–W3 and their references run
``--repeats`` times (3), interleaved, and the table shows medians; W4 runs once, first
(so its RSS holds no reference's imports), with retention on (``keep_pebbles``
10,000). Beside W1 it prints the head's own CPU time per job, how many jobs each commit
carried, and the state file's bytes per finished pebble.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))

import refs  # noqa: E402

from cryoflow.daemon.settings import RunSettings  # noqa: E402
from cryoflow.graph.model import ArgSource, ArgSpec, Graph, Node, frozen_map  # noqa: E402
from cryoflow.head import Head  # noqa: E402
from cryoflow.store import Retention, Store  # noqa: E402
from cryoflow.workers.local import LocalExecutor  # noqa: E402

TRIVIAL = str(Path(__file__).parent / "modules" / "trivial.py")


def _out(ref: str) -> ArgSpec:
    return ArgSpec(ArgSource.OUTPUT, ref=ref)


def _node(name: str, parent: str, **keys: Any) -> Node:
    return Node(name=name, module="trivial", module_ref=TRIVIAL, parents=(parent,), **keys)


def chain_graph() -> Graph:
    nodes = [
        Node(name="In", module="cmdline", is_input=True),
        _node("A", "In", args=frozen_map({"x": _out("In.x")})),
        _node("B", "A", args=frozen_map({"x": _out("parent.x")})),
        _node("C", "B", args=frozen_map({"x": _out("parent.x")})),
    ]
    return Graph(name="bench-chain", nodes=frozen_map({n.name: n for n in nodes}))


def split_graph() -> Graph:
    nodes = [
        Node(name="In", module="cmdline", is_input=True),
        _node("S", "In", split_on="x", merge=True, args=frozen_map({"x": _out("In.items")})),
        _node("F", "S", args=frozen_map({"x": ArgSpec(ArgSource.LITERAL, value=0),
                                         "all": _out("S.x")})),
    ]
    return Graph(name="bench-split", nodes=frozen_map({n.name: n for n in nodes}))


class Bench:
    """One head with 2 local workers on a fresh state folder."""

    def __init__(self, graph: Graph, folder: Path, retention: Retention | None = None) -> None:
        self.store = Store.open(folder, workflow=graph.name)
        self.head = Head(graph, store=self.store,
                         executor=LocalExecutor(workers=2, admin_workers=0, gpus=0,
                                                prefetch=RunSettings.prefetch),
                         retention=retention)

    async def __aenter__(self) -> Head:
        await self.head.start()
        await self.head.offer("In", {"x": 0, "items": [0]})  # warm the workers
        await self.head.wait_idle()
        return self.head

    async def __aexit__(self, *exc: object) -> None:
        await self.head.stop()
        self.store.close()


async def offer_all(head: Head, items: list[dict[str, Any]]) -> None:
    futures = [head.offer("In", item) for item in items]
    await asyncio.gather(*futures)


async def w1(n: int, folder: Path) -> dict[str, float]:
    """Pebbles/s, the head's CPU µs per job, jobs per commit, state bytes per pebble."""
    async with Bench(chain_graph(), folder) as head:
        commits, cpu = head.store.commits, time.process_time()
        start = time.perf_counter()
        await offer_all(head, [{"x": i} for i in range(n)])
        await head.wait_idle()
        rate = n / (time.perf_counter() - start)
        cpu = time.process_time() - cpu
        commits = head.store.commits - commits
        db = head.store.path
    jobs = 3 * n
    return {"rate": rate, "cpu_us_per_job": cpu / jobs * 1e6, "jobs_per_commit": jobs / commits,
            "bytes_per_pebble": db.stat().st_size / (n + 1)}


async def w2(n: int, folder: Path) -> float:
    async with Bench(split_graph(), folder) as head:
        start = time.perf_counter()
        await head.offer("In", {"items": list(range(n))})
        await head.wait_idle()
        return time.perf_counter() - start


async def w3(repeats: int, folder: Path) -> float:
    async with Bench(chain_graph(), folder) as head:
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            await head.offer("In", {"x": i})
            await head.wait_idle()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


async def w4(n: int, folder: Path, keep: int) -> dict[str, float]:
    process = psutil.Process()
    gc.collect()
    async with Bench(chain_graph(), folder, Retention(keep_pebbles=keep)) as head:
        before = process.memory_info().rss
        head.pause()
        start = time.perf_counter()
        for lo in range(0, n, 5000):
            await offer_all(head, [{"x": i} for i in range(lo, min(n, lo + 5000))])
        accept_s = time.perf_counter() - start
        rss = process.memory_info().rss
        start = time.perf_counter()
        head.pause(False)
        await head.wait_idle()
        drain = n / (time.perf_counter() - start)
        head.store.prune(head.retention, now=time.time(), limit=n)
        db = head.store.path
    return {"rss_mb": rss / 2**20, "rss_growth_mb": (rss - before) / 2**20,
            "accept_s": accept_s, "drain_pebbles_s": drain, "keep": keep,
            "store_mb": db.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask reference")
    parser.add_argument("--repeats", type=int, default=3, help="runs of W1-W3 (medians)")
    ns = parser.parse_args()
    sizes = [50, 200] if ns.quick else [200, 2000]
    split_n, backlog, keep = (100, 2000, 500) if ns.quick else (1000, 100_000, 10_000)
    repeats = 1 if ns.quick else ns.repeats
    runs: dict[str, list[Any]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        backlog_figs = asyncio.run(w4(backlog, root / "w4", keep))  # before any reference
        for r in range(repeats):
            for n in sizes:
                runs[f"ours_w1_{n}"].append(asyncio.run(w1(n, root / f"w1-{n}-{r}")))
                runs[f"pool_w1_{n}"].append(refs.pool_w1(n))
            runs["ours_w2"].append(asyncio.run(w2(split_n, root / f"w2-{r}")))
            runs["pool_w2"].append(refs.pool_w2(split_n))
            runs["ours_w3"].append(asyncio.run(w3(20, root / f"w3-{r}")))
            runs["pool_w3"].append(refs.pool_w3())
            if not ns.no_dask:
                runs["dask"].append(refs.dask_refs(sizes))
    ours = {f"w1_{n}": _median_of(runs[f"ours_w1_{n}"]) for n in sizes}
    ours.update(w2={"value": statistics.median(runs["ours_w2"])},
                w3={"value": statistics.median(runs["ours_w3"])})
    pool = {key: statistics.median(runs[f"pool_{key}"]) for key in ("w2", "w3")}
    pool.update({f"w1_{n}": statistics.median(runs[f"pool_w1_{n}"]) for n in sizes})
    dask = None
    if runs["dask"] and all(runs["dask"]):
        dask = {k: statistics.median(d[k] for d in runs["dask"]) for k in runs["dask"][0]}
    print(f"medians of {repeats} run(s), cryoflow and references interleaved")
    print_table(ours, pool, dask, backlog_figs, sizes)


def _median_of(figures: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]}


def print_table(ours: dict[str, dict[str, float]], pool: dict[str, float],
                dask: dict[str, Any] | None, backlog: dict[str, float], sizes: list[int]) -> None:
    def ratio(a: float, b: float | None) -> str:
        return f"{a / b:.2f}x" if b else "-"

    print(f"{'workload':<28}{'cryoflow':>12}{'pool':>12}{'dask':>12}{'vs pool':>10}{'vs dask':>10}"
          f"  head CPU/job, jobs/commit, store bytes/pebble")
    for n in sizes:
        key = f"w1_{n}"
        d = dask.get(key) if dask else None
        figs = ours[key]
        print(f"{'W1 pebbles/s N=' + str(n):<28}{figs['rate']:>12.0f}{pool[key]:>12.0f}"
              f"{(d or 0):>12.0f}{ratio(figs['rate'], pool[key]):>10}"
              f"{ratio(figs['rate'], d):>10}  {figs['cpu_us_per_job']:.0f} us, "
              f"{figs['jobs_per_commit']:.1f}, {figs['bytes_per_pebble']:.0f} B")
    for key, label, digits in (("w2", "W2 split 1000 (s, lower=better)", 3),
                               ("w3", "W3 latency median (ms)", 2)):
        mine, d = ours[key]["value"], dask.get(key) if dask else None
        print(f"{label:<28}{mine:>12.{digits}f}{pool[key]:>12.{digits}f}"
              f"{(d or 0):>12.{digits}f}{ratio(mine, pool[key]):>10}{ratio(mine, d):>10}")
    last = f"w1_{sizes[-1]}"
    print(f"W4 backlog: head RSS {backlog['rss_mb']:.0f} MB "
          f"(+{backlog['rss_growth_mb']:.0f} MB), accepted in {backlog['accept_s']:.1f} s, "
          f"drained at {backlog['drain_pebbles_s']:.0f} pebbles/s "
          f"({ratio(backlog['drain_pebbles_s'], ours[last]['rate'])} of W1); state file "
          f"{backlog['store_mb']:.1f} MB after them with retention keep_pebbles="
          f"{backlog['keep']:,.0f}")


if __name__ == "__main__":
    main()
