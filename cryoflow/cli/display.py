"""What ``ccworkflow`` shows while it runs: a live view on a terminal, plain lines otherwise.

Both show this run's counts (from a :class:`RunTally`), never the lifetime counts of a
resumed state folder. The live view has one row per node (a bar of its branches done
so far, its outcomes, queued and running jobs) and the running jobs with their
progress. Without a terminal, a progress line is logged every ``period_s`` seconds, and
only when something changed since the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cryoflow.cli.tally import RunTally
from cryoflow.head import Head

log = logging.getLogger("cryoflow.progress")

SHOWN_JOBS = 8
BAR_WIDTH = 24
LINE_PERIOD_S = 10.0


def live_view(head: Head, tally: RunTally) -> Group:
    """The node table and the running jobs, as one renderable."""
    return Group(node_rows(head, tally), job_rows(head))


def node_rows(head: Head, tally: RunTally) -> Table:
    """One row per node: a bar of done / seen, outcomes, queued and running jobs."""
    table = Table(title=Text.from_markup(title(head, tally)), title_justify="left",
                  box=None, header_style="bold", pad_edge=False)
    table.add_column("node")
    table.add_column("done", width=BAR_WIDTH)
    for name, style in (("ok", "green"), ("failed", "red"), ("skipped", "dim"),
                        ("queued", "cyan"), ("running", "bold cyan")):
        table.add_column(name, justify="right", style=style)
    for node in head.graph:
        counts: Mapping[str, int] = tally.nodes.get(node.name, {})
        ok = counts.get("success", 0)
        failed = sum(counts.get(o, 0) for o in ("error", "timeout", "cancel"))
        skipped = counts.get("skipped", 0)
        queued = _int(head.status_value(node.name, "pending"))
        running = _int(head.status_value(node.name, "running"))
        done = ok + failed + skipped
        bar = ProgressBar(total=max(1, done + queued + running), completed=done,
                          width=BAR_WIDTH, complete_style="red" if failed else "green",
                          finished_style="red" if failed else "green")
        table.add_row(escape(node.name), bar, *(str(n or "") for n in
                                                 (ok, failed, skipped, queued, running)))
    return table


def title(head: Head, tally: RunTally) -> str:
    """``demo · 3.2 s · 4 completed, 1 failed, 2 active``."""
    failed = tally.pebbles["failed"]
    return (f"[bold]{escape(head.graph.name)}[/] · {tally.elapsed_s:.1f} s · "
            f"[green]{tally.pebbles['completed']} completed[/], "
            + (f"[bold red]{failed} failed[/]" if failed else "0 failed")
            + f", {head.engine.active} active")


def job_rows(head: Head) -> Table:
    """The running jobs (at most :data:`SHOWN_JOBS`), with progress and time taken."""
    jobs = head.store.jobs(state="running", limit=SHOWN_JOBS + 1)
    table = Table.grid(padding=(0, 1))
    now = time.time()
    for job in jobs[:SHOWN_JOBS]:
        value = head.progress.get(job["id"])
        took = f"{now - job['started']:.1f} s" if job.get("started") else ""
        if value is None:
            table.add_row(escape(job["id"]), Text("running", style="cyan"), "", took)
        else:
            done = _percent(value)
            table.add_row(escape(job["id"]), ProgressBar(total=100, completed=done, width=30),
                          f"{done:3.0f}%", took)
    if len(jobs) > SHOWN_JOBS:
        table.add_row("...", "", "", "")
    return table


def progress_line(head: Head, tally: RunTally) -> str:
    """One plain line: this run's pebbles, then jobs by node."""
    busy = []
    for node in head.graph:
        queued = _int(head.status_value(node.name, "pending"))
        running = _int(head.status_value(node.name, "running"))
        if queued or running:
            busy.append(f"{node.name} {running} running/{queued} queued")
    line = (f"{tally.pebbles['completed']} completed, {tally.pebbles['failed']} failed, "
            f"{head.engine.active} active")
    return line + (" | " + ", ".join(busy) if busy else "")


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _percent(value: Any) -> float:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


async def show_progress(head: Head, tally: RunTally, console: Console | None, *,
                        period_s: float = LINE_PERIOD_S) -> None:
    """Until cancelled: a live view on ``console``, or (None) a line when things changed."""
    if console is None:
        await _log_lines(head, tally, period_s)
        return
    with Live(live_view(head, tally), console=console, refresh_per_second=4,
              transient=True, redirect_stderr=False) as view:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(0.25)
                view.update(live_view(head, tally))
        view.update(live_view(head, tally))


async def _log_lines(head: Head, tally: RunTally, period_s: float) -> None:
    last: tuple[int, str] | None = None
    while True:
        await asyncio.sleep(period_s)
        line = progress_line(head, tally)
        if last is None or (tally.changes, line) != last:
            log.info("%s", line)
        last = (tally.changes, line)
