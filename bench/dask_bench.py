"""W1 and W2 (bench/README.md) through the Dask executor, beside Dask's own chain.

    .venv/bin/python bench/dask_bench.py            # N = 200 and 2,000; a 1,000-item split
    .venv/bin/python bench/dask_bench.py --quick    # small sizes, to check it still works

One loopback cluster (a scheduler and 2 worker processes, 1 thread and one ``normal``
slot each) serves both columns in the same run: cryoflow's head with the Dask
executor (every state change committed to SQLite, status and logs back through Dask
events), and a bare ``client.submit`` chain of the same trivial function.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import refs  # noqa: E402
from run import chain_graph, split_graph  # noqa: E402

from cryoflow.graph.model import Graph  # noqa: E402
from cryoflow.head import Head  # noqa: E402
from cryoflow.store import Store  # noqa: E402
from cryoflow.workers.dask import DaskExecutor, DaskOptions  # noqa: E402


async def through_cryoflow(graph: Graph, folder: Path, scheduler: str,
                           items: list[dict[str, Any]]) -> float:
    """Seconds for ``items`` to run through ``graph`` on the Dask executor (warm)."""
    store = Store.open(folder, workflow=graph.name)
    head = Head(graph, store=store, executor=DaskExecutor(DaskOptions(scheduler=scheduler)))
    await head.start()
    try:
        await head.offer("In", {"x": 0, "items": [0]})  # warm the workers and their imports
        await head.wait_idle()
        start = time.perf_counter()
        await asyncio.gather(*(head.offer("In", item) for item in items))
        await head.wait_idle()
        return time.perf_counter() - start
    finally:
        await head.stop()
        store.close()


def dask_chain(client: Any, n: int) -> float:
    """Seconds for n items through A → B → C as plain ``client.submit`` tasks."""
    start = time.perf_counter()
    futures = [client.submit(refs.trivial, i, pure=False) for i in range(n)]
    for _ in range(2):
        futures = [client.submit(_next, f, pure=False) for f in futures]
    client.gather(futures)
    return time.perf_counter() - start


def dask_split(client: Any, n: int) -> float:
    start = time.perf_counter()
    parts = client.gather([client.submit(refs.trivial, i, pure=False) for i in range(n)])
    client.submit(refs.trivial, len(parts), pure=False).result()
    return time.perf_counter() - start


def _next(result: dict[str, int]) -> dict[str, int]:
    return refs.trivial(result["x"])


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    ns = parser.parse_args()
    sizes, split_n = ([50, 200], 100) if ns.quick else ([200, 2000], 1000)
    rows: list[tuple[str, float, float, bool]] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", resources={"normal": 1}) as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        client.submit(refs.trivial, 0, pure=False).result()
        for n in sizes:
            ours = asyncio.run(through_cryoflow(chain_graph(), Path(tmp) / f"w1-{n}",
                                                cluster.scheduler_address,
                                                [{"x": i} for i in range(n)]))
            rows.append((f"W1 pebbles/s N={n}", n / ours, n / dask_chain(client, n), True))
        ours = asyncio.run(through_cryoflow(split_graph(), Path(tmp) / "w2",
                                            cluster.scheduler_address,
                                            [{"items": list(range(split_n))}]))
        rows.append((f"W2 split {split_n} (s)", ours, dask_split(client, split_n), False))
    print_table(rows)


def print_table(rows: list[tuple[str, float, float, bool]]) -> None:
    print(f"{'workload':<26}{'cryoflow+dask':>15}{'dask submit':>13}{'ratio':>9}")
    for name, ours, theirs, higher_is_better in rows:
        ratio = ours / theirs if theirs else 0.0
        digits = 0 if higher_is_better else 3
        print(f"{name:<26}{ours:>15.{digits}f}{theirs:>13.{digits}f}{ratio:>8.2f}x")
    print("W1 ratio: cryoflow's rate over Dask's (higher is better); "
          "W2 ratio: cryoflow's time over Dask's (lower is better).")


if __name__ == "__main__":
    main()
