"""``ccnode --scheduler tcp://HOST:8786 -n 4 -a 1 --gpus 1``: a Dask worker for cryoflow.

It starts one Dask worker (under a Dask nanny, which restarts it if it dies) that
advertises cryoflow's worker classes as Dask resources: ``normal`` = ``-n``,
``admin`` = ``-a``, ``gpu`` = ``--gpus``, with one thread per slot. The head's Dask
executor (``ccworkflow GRAPH --executor dask --scheduler URL``) counts these as its
slots. ``--name`` is the host this worker stands for in ``ccnode: HOST`` pins (default:
the machine's hostname); it is also the Dask worker's name, so give each ``ccnode`` on
one machine its own. When the scheduler goes away the worker closes, as Dask workers
do, and ccnode starts a new one that rejoins once the scheduler is back. The machine
needs cryoflow, its modules and the job's files at the same paths as the head (a
shared file system), or jobs that stage their files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from cryoflow.cli.common import Parser

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
log = logging.getLogger("cryoflow.ccnode")


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="ccnode", description="Start a Dask worker that runs cryoflow jobs."
    )
    p.add_argument("--scheduler", required=True, help="Dask scheduler, tcp://HOST:8786")
    p.add_argument(
        "-n", "--workers", type=int, default=None, help="normal slots (default: one per CPU)"
    )
    p.add_argument("-a", "--admin-workers", type=int, default=1, help="admin slots (default 1)")
    p.add_argument("--gpus", type=int, default=0, help="GPU slots (default 0)")
    p.add_argument(
        "--name",
        default=None,
        help="the host name jobs pin to with ccnode (default: this hostname)",
    )
    p.add_argument("--host", default=None, help="address to listen on and advertise")
    p.add_argument("--memory-limit", default="auto", help="Dask worker memory limit")
    p.add_argument("--local-directory", default=None, help="Dask worker scratch folder")
    p.add_argument("--loglevel", default="INFO", help="log level (default INFO)")
    return p


def worker_options(args: argparse.Namespace, *, cpus: int, hostname: str) -> dict[str, Any]:
    """The ``distributed.Nanny`` keyword arguments for the parsed command line."""
    normal = cpus if args.workers is None else args.workers
    resources = {"normal": normal, "admin": args.admin_workers, "gpu": args.gpus}
    if min(resources.values()) < 0 or sum(resources.values()) < 1:
        raise ValueError("ccnode needs at least one slot; slot counts cannot be negative")
    name = args.name or hostname
    options: dict[str, Any] = {
        "scheduler_ip": args.scheduler,
        "nthreads": sum(resources.values()),
        "resources": {k: v for k, v in resources.items() if v},
        "name": name,
        "memory_limit": args.memory_limit,
        "env": {"CRYOFLOW_NODE_NAME": name},
    }
    if args.host:
        options["host"] = args.host
    if args.local_directory:
        options["local_directory"] = args.local_directory
    return options


async def serve(options: Mapping[str, Any], *, rejoin_s: float = 1.0) -> None:
    """Run the worker until SIGTERM/SIGINT; rejoin when the scheduler went away.

    A Dask worker closes when it loses its scheduler; ccnode then starts a new one,
    which waits until the scheduler is back.
    """
    from distributed import Nanny

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    while not stopping.is_set():
        async with Nanny(**options) as nanny:
            finished = asyncio.ensure_future(nanny.finished())
            stop = asyncio.ensure_future(stopping.wait())
            await asyncio.wait([finished, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if stopping.is_set():
                await nanny.close()
        if not stopping.is_set():
            log.warning("the Dask worker closed; rejoining %s", options["scheduler_ip"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), rejoin_s)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        options = worker_options(args, cpus=os.cpu_count() or 1, hostname=socket.gethostname())
    except ValueError as exc:
        print(f"ccnode: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        import distributed  # noqa: F401
    except ModuleNotFoundError:
        print(
            "ccnode: needs the 'distributed' package: pip install 'cryoflow[dask]'", file=sys.stderr
        )
        return EXIT_INVALID
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(options))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
