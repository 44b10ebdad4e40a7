"""cryoflow's benchmark suite: W1–W4 of BENCHMARKS.md beside the references, one table.

    .venv/bin/python bench/run.py            # full sizes
    .venv/bin/python bench/run.py --quick    # small sizes, to check the suite still works

Every cryoflow figure commits every state change to SQLite (WAL, synchronous=NORMAL)
and runs its jobs in 2 local worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))

import refs  # noqa: E402

from cryoflow.graph.model import ArgSource, ArgSpec, Graph, Node, frozen_map  # noqa: E402
from cryoflow.head import Head  # noqa: E402
from cryoflow.store import Store  # noqa: E402
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

    def __init__(self, graph: Graph, folder: Path) -> None:
        self.store = Store.open(folder, workflow=graph.name)
        self.head = Head(graph, store=self.store,
                         executor=LocalExecutor(workers=2, admin_workers=0, gpus=0,
                                                prefetch=1))

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


async def w1(n: int, folder: Path) -> float:
    async with Bench(chain_graph(), folder) as head:
        start = time.perf_counter()
        await offer_all(head, [{"x": i} for i in range(n)])
        await head.wait_idle()
        return n / (time.perf_counter() - start)


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


async def w4(n: int, folder: Path) -> dict[str, float]:
    process = psutil.Process()
    gc.collect()
    async with Bench(chain_graph(), folder) as head:
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
        return {"rss_mb": rss / 2**20, "rss_growth_mb": (rss - before) / 2**20,
                "accept_s": accept_s, "drain_pebbles_s": drain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask reference")
    ns = parser.parse_args()
    sizes = [50, 200] if ns.quick else [200, 2000]
    split_n, backlog = (100, 2000) if ns.quick else (1000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours = {f"w1_{n}": asyncio.run(w1(n, root / f"w1-{n}")) for n in sizes}
        ours["w2"] = asyncio.run(w2(split_n, root / "w2"))
        ours["w3"] = asyncio.run(w3(20, root / "w3"))
        backlog_figs = asyncio.run(w4(backlog, root / "w4"))
    pool = {f"w1_{n}": refs.pool_w1(n) for n in sizes}
    pool["w2"] = refs.pool_w2(split_n)
    pool["w3"] = refs.pool_w3()
    dask = None if ns.no_dask else refs.dask_refs(sizes)
    print_table(ours, pool, dask, backlog_figs, sizes)


def print_table(ours: dict[str, float], pool: dict[str, float], dask: dict[str, Any] | None,
                backlog: dict[str, float], sizes: list[int]) -> None:
    def ratio(a: float, b: float | None) -> str:
        return f"{a / b:.2f}x" if b else "-"

    print(f"{'workload':<28}{'cryoflow':>12}{'pool':>12}{'dask':>12}{'vs pool':>10}{'vs dask':>10}")
    for n in sizes:
        key = f"w1_{n}"
        d = dask.get(key) if dask else None
        print(f"{'W1 pebbles/s N=' + str(n):<28}{ours[key]:>12.0f}{pool[key]:>12.0f}"
              f"{(d or 0):>12.0f}{ratio(ours[key], pool[key]):>10}{ratio(ours[key], d):>10}")
    d2 = dask.get("w2") if dask else None
    print(f"{'W2 split 1000 (s, lower=better)':<28}{ours['w2']:>12.3f}{pool['w2']:>12.3f}"
          f"{(d2 or 0):>12.3f}{ratio(ours['w2'], pool['w2']):>10}{ratio(ours['w2'], d2):>10}")
    d3 = dask.get("w3") if dask else None
    print(f"{'W3 latency median (ms)':<28}{ours['w3']:>12.2f}{pool['w3']:>12.2f}"
          f"{(d3 or 0):>12.2f}{ratio(ours['w3'], pool['w3']):>10}{ratio(ours['w3'], d3):>10}")
    last = f"w1_{sizes[-1]}"
    print(f"W4 backlog: head RSS {backlog['rss_mb']:.0f} MB "
          f"(+{backlog['rss_growth_mb']:.0f} MB), accepted in {backlog['accept_s']:.1f} s, "
          f"drained at {backlog['drain_pebbles_s']:.0f} pebbles/s "
          f"({ratio(backlog['drain_pebbles_s'], ours[last])} of W1)")


if __name__ == "__main__":
    main()
