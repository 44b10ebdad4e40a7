"""A head built as ``ccworkflow`` (``cryoflow.cli.run``) builds it, but paused.

``python driver.py enqueue GRAPH STATE LEDGER --workers N`` opens the store, starts a
paused head, offers every item of the ledger's spool at once (group commit, idempotency
key = ``probe_id``), records the acks and writes ``LEDGER/driver-enqueued``; then it
waits to be killed.

``python driver.py resume GRAPH STATE LEDGER --workers N`` starts a paused head on the
existing store and writes ``LEDGER/driver-ready`` (``{"pid", "t_ready"}``) once it is
ready; on SIGUSR1 it resumes dispatching, waits until every pebble is done, writes
``LEDGER/driver-drained``, stops the head and exits 0.

Input modules are not started: the driver is the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from cryoflow.graph import load_graph
from cryoflow.head import Head
from cryoflow.store import Store
from cryoflow.workers.local import LocalExecutor

PROBE_MODULES = Path(__file__).resolve().parent / "probe_modules"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="driver")
    parser.add_argument("mode", choices=("enqueue", "resume"))
    parser.add_argument("graph", type=Path)
    parser.add_argument("state", type=Path)
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    ns = parser.parse_args(argv)
    return asyncio.run(_run(ns))


async def _run(ns: argparse.Namespace) -> int:
    graph = load_graph(ns.graph, module_paths=(PROBE_MODULES,))
    store = Store.open(ns.state, workflow=graph.name)
    executor = LocalExecutor(workers=ns.workers, admin_workers=0)
    head = Head(graph, store=store, executor=executor, module_paths=(str(PROBE_MODULES),))
    head.pause()
    await head.start()
    try:
        if ns.mode == "enqueue":
            await _enqueue(head, ns.ledger, graph.input_nodes[0].name)
            await asyncio.Event().wait()  # until killed
        else:
            await _resume(head, ns.ledger)
    finally:
        await head.stop()
        store.close()
    return 0


async def _enqueue(head: Head, ledger: Path, input_node: str) -> None:
    lines = (ledger / "spool.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines if line]
    offers = [head.offer(input_node, item, idem_key=item["probe_id"]) for item in items]
    ids = await asyncio.gather(*offers)
    acks = "".join(f"{item['probe_id']}\t{pebble}\n" for item, pebble in zip(items, ids))
    _append_synced(ledger / "acks.tsv", acks)
    _write(ledger / "driver-enqueued", {"pid": os.getpid(), "t": time.time()})


async def _resume(head: Head, ledger: Path) -> None:
    go = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, go.set)
    _write(ledger / "driver-ready", {"pid": os.getpid(), "t_ready": time.time()})
    await go.wait()
    head.pause(False)
    await head.wait_idle()
    _write(ledger / "driver-drained", {"pid": os.getpid(), "t": time.time()})


def _append_synced(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
