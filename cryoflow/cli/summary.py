"""The end-of-run summary of ``ccworkflow``: what this run did and where to look next.

It shows the pebbles by outcome and the run's duration, a table of node outcomes, each
failed pebble with its node, error and last log lines, the errors that a downstream
node handled, and the commands that show more (``cclog``, ``ccstatus``, the report).
Text is rich markup: coloured on a terminal, plain otherwise.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cryoflow.cli.tally import NO_ERROR_TEXT, Failure, RunTally
from cryoflow.graph.model import Graph
from cryoflow.store.reader import Queries

SHOWN_FAILURES = 5
LOG_LINES = 5
OUTCOME_STYLE = {"success": "green", "error": "red", "timeout": "red", "cancel": "yellow",
                 "skipped": "dim"}


@dataclass(frozen=True)
class Pointers:
    """Where this run's state went, for the "look next" lines."""

    state_dir: Path
    report: Path | None = None
    web_url: str | None = None
    """The web view's address when it is still being served."""
    served: bool = True
    """Whether the run served a web view at all (not with ``--no-http``)."""


def print_summary(console: Console, tally: RunTally, graph: Graph, store: Queries,
                  pointers: Pointers) -> None:
    """Print the whole summary to ``console``."""
    console.print(headline(tally, graph.name), soft_wrap=True)
    if tally.nodes:
        console.print(node_table(tally, graph))
    shown = 0
    for fate, failure, alike in grouped(tally)[:SHOWN_FAILURES]:
        print_failure(console, failure, store, fate=fate)
        if alike:
            console.print(f"  [dim]... and {alike} more with the same error[/]")
        shown += 1 + alike
    hidden = tally.failure_count - shown
    if hidden > 0:
        console.print(f"\n... and {hidden} more failed node{'s' * (hidden != 1)} "
                      "(see the report or cclog)", soft_wrap=True)
    for line in look_next(tally, pointers):
        console.print(line, soft_wrap=True)


def headline(tally: RunTally, name: str) -> str:
    """``demo: 5 pebbles in 1.2 s — 4 completed, 1 failed`` (this run only)."""
    done = tally.finished
    parts = [f"[green]{tally.pebbles['completed']} completed[/]"]
    failed = tally.pebbles["failed"]
    parts.append(f"[bold red]{failed} failed[/]" if failed else "0 failed")
    handled = sum(fate == "handled" for fate, _ in tally.by_fate())
    if handled:
        parts.append(f"[yellow]{handled} handled error{'s' * (handled != 1)}[/]")
    return (f"[bold]{escape(name)}[/]: {done} pebble{'s' * (done != 1)} finished in "
            f"{_duration(tally.elapsed_s)} — " + ", ".join(parts))


def node_table(tally: RunTally, graph: Graph) -> Table:
    """Outcomes per node in graph order (nodes this run did not reach are left out)."""
    outcomes = [o for o in ("success", "error", "timeout", "cancel", "skipped")
                if any(counts[o] for counts in tally.nodes.values())]
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("node")
    for outcome in outcomes:
        table.add_column(outcome, justify="right", style=OUTCOME_STYLE.get(outcome))
    names = [n.name for n in graph if n.name in tally.nodes]
    names += sorted(set(tally.nodes) - set(names))
    for name in names:
        counts = tally.nodes[name]
        table.add_row(escape(name), *(str(counts[o] or "") for o in outcomes))
    return table


def grouped(tally: RunTally) -> list[tuple[str, Failure, int]]:
    """``(fate, first failure, how many more alike)``: alike is same fate, node and error."""
    groups: dict[tuple[str, str, str], list[Failure]] = {}
    for fate, failure in tally.by_fate():
        groups.setdefault((fate, failure.node, failure.error), []).append(failure)
    return [(key[0], members[0], len(members) - 1) for key, members in groups.items()]


FATE_LABEL = {"failed": "[bold red]failed[/]", "handled": "[yellow]handled error[/]",
              "unfinished": "[yellow]error (pebble unfinished)[/]"}


def print_failure(console: Console, failure: Failure, store: Queries, *, fate: str) -> None:
    """The node, the error and the node's last log lines in that pebble."""
    label = FATE_LABEL[fate]
    tries = f" after {failure.attempts} attempts" if failure.attempts > 1 else ""
    console.print(f"\n{label}: {escape(failure.where)} ({failure.outcome}{tries})")
    for line in failure.error.strip().splitlines()[-6:] or [failure.outcome]:
        style = "dim" if failure.error == NO_ERROR_TEXT else "red"
        console.print(f"  [{style}]{escape(line)}[/]", soft_wrap=True)
    lines = last_log_lines(store, failure)
    if lines:
        console.print("  last log lines:", soft_wrap=True)
        for line in lines:
            console.print(f"    [dim]{escape(line)}[/]", soft_wrap=True)


def last_log_lines(store: Queries, failure: Failure, count: int = LOG_LINES) -> list[str]:
    """The last ``count`` log messages of the node in the failure's pebble."""
    rows = store.logs(pebble_id=failure.pebble_id, node=failure.node, limit=1000)
    mine = [row for row in rows if str(row["job_id"] or "").startswith(failure.job_prefix)]
    return [f"{row['level']:<7} {row['message']}" for row in mine[-count:]]


def look_next(tally: RunTally, pointers: Pointers) -> list[str]:
    """Commands that show more about this run."""
    state = shlex.quote(str(pointers.state_dir))
    failed = tally.by_fate()
    commands = [(f"cclog --state {state} --pebble {failed[0][1].pebble_id}", "that pebble's log")
                if failed else (f"cclog --state {state}", "the log"),
                (f"ccstatus --state {state}", "counts of every run so far")]
    width = max(len(command) for command, _ in commands)
    lines = ["", "[bold]look next:[/]"]
    lines += [f"  {escape(command.ljust(width))}   [dim]# {note}[/]" for command, note in commands]
    if pointers.report is not None:
        lines.append(f"  the report: {escape(str(pointers.report))}")
    else:
        lines.append("  --report FILE writes every pebble's outputs and errors as JSON")
    if pointers.web_url:
        lines.append(f"  the web view: {escape(pointers.web_url)}   [dim]# until Ctrl-C[/]")
    elif pointers.served:
        lines.append("  --stay keeps the web view open after the run")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
