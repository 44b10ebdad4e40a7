"""What ``ccworkflow`` shows while it runs: a live table on a terminal, log lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from cryoflow.head import Head

log = logging.getLogger("cryoflow.progress")

COLUMNS = ("waiting", "queued", "running", "success", "error", "timeout", "skipped")


def counts_table(head: Head) -> Table:
    """Per-node counts of pebble branches by state, in graph order."""
    counts = head.store.node_counts()
    table = Table(title=f"{head.graph.name}: {head.counts.completed} completed, "
                        f"{head.counts.failed} failed, {head.engine.active} active")
    table.add_column("node")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for node in head.graph:
        row = counts.get(node.name, {})
        table.add_row(node.name, *(str(row.get(c, 0) or "") for c in COLUMNS))
    return table


def progress_rows(head: Head) -> Table:
    """One progress bar per running job."""
    table = Table.grid(padding=(0, 1))
    for job_id, value in sorted(head.progress.items())[:20]:
        table.add_row(job_id, ProgressBar(total=100, completed=_percent(value), width=40),
                      f"{_percent(value):.0f}%")
    return table


def _percent(value: Any) -> float:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


def summary_line(head: Head) -> str:
    counts = head.store.node_counts()
    parts = [f"{name}: " + " ".join(f"{k}={v}" for k, v in sorted(row.items()) if v)
             for name, row in counts.items()]
    return (f"{head.counts.completed} completed, {head.counts.failed} failed, "
            f"{head.engine.active} active | " + "; ".join(parts))


async def show_progress(head: Head, *, live: bool, period_s: float = 1.0) -> None:
    """Refresh until cancelled: a rich live view when ``live``, else a log line each 10 s."""
    if not live:
        while True:
            await asyncio.sleep(10 * period_s)
            log.info("%s", summary_line(head))
    console = Console()
    with Live(console=console, refresh_per_second=4, transient=False) as view:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                view.update(Group(counts_table(head), progress_rows(head)))
                await asyncio.sleep(period_s)
        view.update(Group(counts_table(head), progress_rows(head)))
