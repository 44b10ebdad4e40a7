"""A head with one dirwatcher input, run as its own process by crash tests.

Usage: python serve_dirwatcher.py STATE_DIR SRC_DIR
Prints "READY" once watching, then runs until killed. Jobs are not run (no workers).
CRYOFLOW_FAILPOINTS is honoured (e.g. watcher_seen_before_commit=crash@2).
"""

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from enginekit import graph, node  # noqa: E402

from cryoflow.failpoints import Failpoints  # noqa: E402
from cryoflow.graph.model import WorkerClass  # noqa: E402
from cryoflow.head import Head  # noqa: E402
from cryoflow.daemon.inputs import InputRunner  # noqa: E402
from cryoflow.store import Store  # noqa: E402
from cryoflow.workers.inline import InlineExecutor  # noqa: E402


async def main(state: Path, src: Path) -> None:
    watcher = str(ROOT / "cryoflow" / "builtin_modules" / "dirwatcher.py")
    g = graph(node("In", module="dirwatcher", module_ref=watcher,
                   args={"src": str(src), "stabilize": 0.2}),
              node("Work", ("In",), module="noop"))
    store = Store.open(state, workflow=g.name)
    head = Head(g, store=store, executor=InlineExecutor(slots={WorkerClass.NORMAL: 0}),
                failpoints=Failpoints.from_env(os.environ))
    await head.start()
    InputRunner(head, g, {}, {}).start(asyncio.get_running_loop())
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
