"""A head with one netwatcher input, run as its own process by crash tests.

Usage: python serve_netwatcher.py STATE_DIR [max_pending]
Prints "PORT <n>" once listening, then serves until killed. CRYOFLOW_FAILPOINTS is
honoured (e.g. post_parsed_before_commit=crash@3). Jobs are not run
(no workers), so every accepted post stays an unfinished pebble in the store.
"""

import asyncio
import os
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from enginekit import graph, node  # noqa: E402

from cryoflow.failpoints import Failpoints  # noqa: E402
from cryoflow.graph.model import WorkerClass  # noqa: E402
from cryoflow.head import Head  # noqa: E402
from cryoflow.daemon.inputs import InputHandler  # noqa: E402
from cryoflow.store import Store  # noqa: E402
from cryoflow.watch.netwatch import NetwatchConfig, NetWatcher  # noqa: E402
from cryoflow.workers.inline import InlineExecutor  # noqa: E402


async def main(state: Path, max_pending: int) -> None:
    g = graph(node("In", module="netwatcher"),
              node("Work", ("In",), module="noop"))
    store = Store.open(state, workflow=g.name)
    head = Head(g, store=store, executor=InlineExecutor(slots={WorkerClass.NORMAL: 0}),
                failpoints=Failpoints.from_env(os.environ))
    await head.start()
    config = NetwatchConfig.from_args("In", {"port": 0, "max_pending": max_pending}, {})
    watcher = NetWatcher(config, InputHandler(head, g.nodes["In"], asyncio.get_running_loop()))
    stop = threading.Event()
    threading.Thread(target=watcher.run, args=(stop,), daemon=True).start()
    await asyncio.to_thread(watcher.ready.wait, 20)
    print(f"PORT {watcher.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    pending = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    asyncio.run(main(Path(sys.argv[1]), pending))
