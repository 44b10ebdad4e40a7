"""Reference measurements run in the same process as cryoflow's: the floors to compare with."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def trivial(x: int) -> dict[str, int]:
    return {"x": x + 1}


def _chain(pool: ProcessPoolExecutor, n: int) -> None:
    """N items through A → B → C, each step a separate task, all items in flight."""
    futures = [pool.submit(trivial, i) for i in range(n)]
    for _ in range(2):
        futures = [pool.submit(trivial, f.result()["x"]) for f in futures]
    for f in futures:
        f.result()


def pool_w1(n: int) -> float:
    """Items/s of a bare ProcessPoolExecutor(2) chain (the floor of process dispatch)."""
    with ProcessPoolExecutor(2) as pool:
        pool.submit(trivial, 0).result()
        start = time.perf_counter()
        _chain(pool, n)
        return n / (time.perf_counter() - start)


def pool_w2(n: int = 1000) -> float:
    """Seconds for n trivial jobs plus one merging job on ProcessPoolExecutor(2)."""
    with ProcessPoolExecutor(2) as pool:
        pool.submit(trivial, 0).result()
        start = time.perf_counter()
        results = [f.result() for f in [pool.submit(trivial, i) for i in range(n)]]
        pool.submit(trivial, len(results)).result()
        return time.perf_counter() - start


def pool_w3(repeats: int = 20) -> float:
    """Median ms of one item through A → B → C on a warm ProcessPoolExecutor(2)."""
    with ProcessPoolExecutor(2) as pool:
        pool.submit(trivial, 0).result()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            x = 0
            for _ in range(3):
                x = pool.submit(trivial, x).result()["x"]
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


def dask_refs(n_values: list[int]) -> dict[str, Any] | None:
    """Dask distributed LocalCluster (2 processes, 1 thread each), when installed."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return None
    out: dict[str, Any] = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.submit(trivial, 0, pure=False).result()
        for n in n_values:
            start = time.perf_counter()
            futures = [client.submit(trivial, i, pure=False) for i in range(n)]
            for _ in range(2):
                futures = [client.submit(lambda r: trivial(r["x"]), f, pure=False)
                           for f in futures]
            client.gather(futures)
            out[f"w1_{n}"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        parts = client.gather([client.submit(trivial, i, pure=False) for i in range(1000)])
        client.submit(trivial, len(parts), pure=False).result()
        out["w2"] = time.perf_counter() - start
        times = []
        for _ in range(20):
            start = time.perf_counter()
            f = client.submit(trivial, 0, pure=False)
            for _ in range(2):
                f = client.submit(lambda r: trivial(r["x"]), f, pure=False)
            f.result()
            times.append((time.perf_counter() - start) * 1000)
        out["w3"] = statistics.median(times)
    return out
