"""The store under retention: a stream of finished pebbles, and the file size it keeps.

    .venv/bin/python bench/store_bench.py                  # 1,000,000 pebbles, keep 10,000
    .venv/bin/python bench/store_bench.py --quick          # 20,000 pebbles, keep 2,000

This inserts finished pebbles fast, directly through the store's write batches (no head,
no workers): each pebble has W1's shape (an input node and three job nodes A, B, C, each
job queued, dispatched and finished, then the pebble done), 500 pebbles per commit, and
the store prunes what retention lets go after every commit, as the head does. It prints
the state file's size (database plus write-ahead log) as the stream goes, and checks it
stays under ``--limit-mb``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from cryoflow.engine.records import (
    JobSpec,
    NodeChanged,
    NodeState,
    NodeStatus,
    PebbleDone,
    PebbleOutcome,
    QueueJob,
    job_id,
)
from cryoflow.graph.model import Outcome, WorkerClass, frozen_map
from cryoflow.store import Batch, Retention, Store

PER_COMMIT = 500


def some_pebbles(tx: Batch, numbers: range, now: float) -> None:
    """W1's writes for each pebble: input node done, then A → B → C, then done.

    The writes of many pebbles go together, as the head's group commit does; each node
    changes to queued and then to done, each job is queued, dispatched and finished.
    """
    pids = [tx.add_pebble("In", {"x": n}, now=now)[0] for n in numbers]
    tx.apply([NodeChanged(pid, "In", (), NodeState(NodeStatus.DONE, Outcome.SUCCESS,
                                                   output={"x": n}))
              for pid, n in zip(pids, numbers)], now=now)
    queued = NodeState(NodeStatus.QUEUED, resolved_by="In", combined=Outcome.SUCCESS,
                       attempts=1)
    specs = [JobSpec(id=job_id(pid, node, (), 1), pebble_id=pid, node=node, branch=(),
                     attempt=1, args=frozen_map({"x": pid}), priority=50,
                     worker_class=WorkerClass.NORMAL)
             for pid in pids for node in ("A", "B", "C")]
    tx.apply([a for s in specs for a in (NodeChanged(s.pebble_id, s.node, (), queued),
                                          QueueJob(s))], now=now)
    tx.jobs_dispatched([s.id for s in specs], now=now)
    done = []
    for s in specs:
        retval = {"x": s.pebble_id + 1}
        stats = {"worker": "normal-0", "node": "host", "runtime": 7.5e-05,
                 "cpu_time": 7e-05, "max_memory": 31961088, "started": now, "finished": now}
        tx.job_started(s.id, worker="normal-0", host="host", now=now, write=False)
        tx.job_finished(s.id, outcome="success", retval=retval, error=None, stats=stats,
                        now=now)
        done.append(NodeChanged(s.pebble_id, s.node, (), NodeState(
            NodeStatus.DONE, Outcome.SUCCESS, output=retval, resolved_by="In",
            combined=Outcome.SUCCESS, attempts=1, stats=frozen_map({**stats, "priority": 50}))))
    tx.apply(done + [PebbleDone(pid, PebbleOutcome.COMPLETED) for pid in pids], now=now)


def file_mb(store: Store) -> float:
    wal = store.path.with_name(store.path.name + "-wal")
    size = store.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return size / 2**20


def stream(folder: Path, total: int, retention: Retention, report_every: int) -> float:
    """Run the stream; return the peak size of the state files (MB)."""
    with Store.open(folder, workflow="bench-stream") as store:
        start, peak = time.perf_counter(), 0.0
        for first in range(0, total, PER_COMMIT):
            now = time.time()
            with store.batch() as tx:
                some_pebbles(tx, range(first, min(total, first + PER_COMMIT)), now)
                tx.prune(retention, now=now, limit=2 * PER_COMMIT)
            done = min(total, first + PER_COMMIT)
            peak = max(peak, file_mb(store))
            if done % report_every == 0 or done == total:
                rate = done / (time.perf_counter() - start)
                db_mb = store.path.stat().st_size / 2**20
                print(f"{done:>9,} pebbles: files {file_mb(store):7.1f} MB (database "
                      f"{db_mb:.1f} MB, the rest write-ahead log) "
                      f"(peak {peak:.1f} MB), {rate:,.0f} pebbles/s, "
                      f"{store.totals()['pebbles']:,} kept, {store.pebble_counts()}",
                      flush=True)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 pebbles, keep 2,000")
    parser.add_argument("--pebbles", type=int, default=1_000_000)
    parser.add_argument("--keep", type=int, default=10_000, help="retention.keep_pebbles")
    parser.add_argument("--limit-mb", type=float, default=64.0,
                        help="the configured size the stream must stay under")
    ns = parser.parse_args()
    total, keep = (20_000, 2_000) if ns.quick else (ns.pebbles, ns.keep)
    retention = Retention(keep_pebbles=keep)
    print(f"stream of {total:,} finished pebbles, retention keep_pebbles={keep:,}, "
          f"limit {ns.limit_mb:g} MB (inserted directly through the store)")
    with tempfile.TemporaryDirectory() as tmp:
        peak = stream(Path(tmp) / "state", total, retention, max(PER_COMMIT, total // 10))
    ok = peak <= ns.limit_mb
    print(f"peak size of the state files {peak:.1f} MB: {'under' if ok else 'OVER'} the "
          f"{ns.limit_mb:g} MB limit")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
