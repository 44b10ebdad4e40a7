"""``ccstatus [--state DIR | --url URL] [--follow] [--json]``: what a workflow is doing.

Prints the pebble counts, per-node counts, the running jobs with their progress, and
the worker slots (from a URL). ``--follow`` refreshes every ``--interval`` seconds
until Ctrl-C (or ``--count`` refreshes); ``--json`` prints the same as one JSON
document per refresh. Exit codes: 0, or 2 when the source cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from cryoflow.api.client import Source, SourceError, add_source_flags, printable, source_from_args
from cryoflow.cli.common import Parser, first_line, quiet_pipe

EXIT_OK, EXIT_INVALID = 0, 2
COLUMNS = ("waiting", "queued", "running", "success", "error", "timeout", "cancel", "skipped")
BAR_WIDTH = 20


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ccstatus", description=first_line(__doc__))
    add_source_flags(parser)
    parser.add_argument("--follow", "-f", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="seconds between refreshes with --follow (default 1)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="with --follow, stop after N refreshes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ccstatus`` with ``argv``; return the exit code (a closed pipe ends it quietly)."""
    return quiet_pipe(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        source = source_from_args(args)
    except SourceError as exc:
        return fail(exc)
    try:
        show = print_json if args.json else print_text
        return follow(source, show, args) if args.follow else once(source, show)
    except SourceError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        source.close()


def fail(exc: Exception) -> int:
    print(f"ccstatus: {exc}", file=sys.stderr)
    return EXIT_INVALID


def once(source: Source, show: Callable[[dict[str, Any], TextIO], None]) -> int:
    show(source.summary(), sys.stdout)
    return EXIT_OK


def follow(source: Source, show: Callable[[dict[str, Any], TextIO], None],
           args: argparse.Namespace) -> int:
    shown = 0
    while args.count is None or shown < args.count:
        if shown and sys.stdout.isatty() and not args.json:
            print("\x1b[H\x1b[2J", end="")
        show(source.summary(), sys.stdout)
        sys.stdout.flush()
        shown += 1
        if args.count is None or shown < args.count:
            time.sleep(args.interval)
    return EXIT_OK


def print_json(summary: dict[str, Any], out: TextIO) -> None:
    print(json.dumps(summary, default=str), file=out)


def print_text(summary: dict[str, Any], out: TextIO) -> None:
    for line in render(summary, now=time.time()):
        print(line, file=out)


def render(summary: dict[str, Any], *, now: float) -> list[str]:
    """The text report of one summary."""
    p = summary["pebbles"]
    lines = [f"workflow {printable(summary['workflow'])}: {p.get('active', 0)} active, "
             f"{p.get('completed', 0)} completed, {p.get('failed', 0)} failed", ""]
    lines += node_table(summary["nodes"])
    lines += ["", f"running jobs: {len(summary['running'])}"]
    lines += [running_line(job, now) for job in summary["running"]]
    if summary["classes"]:
        lines += ["", "workers: " + ", ".join(
            f"{c['class']} {c['busy']}/{c['capacity']} busy" for c in summary["classes"])]
    return lines


def node_table(nodes: list[dict[str, Any]]) -> list[str]:
    width = max([len("node")] + [len(printable(n["name"])) for n in nodes])
    header = "node".ljust(width) + "".join(c.rjust(9) for c in COLUMNS)
    rows = [printable(n["name"]).ljust(width)
            + "".join(str(n["counts"].get(c, 0) or "").rjust(9) for c in COLUMNS)
            for n in nodes]
    return [header, *rows]


def running_line(job: dict[str, Any], now: float) -> str:
    done = percent(job.get("progress"))
    bar = "#" * round(done / 100 * BAR_WIDTH)
    took = f"{now - job['started']:.1f} s" if job.get("started") else ""
    where = printable(f"{job.get('worker') or '?'}@{job.get('host') or '?'}")
    return f"  {printable(job['id'])}  [{bar.ljust(BAR_WIDTH)}] {done:3.0f}%  {where}  {took}"


def percent(value: Any) -> float:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


if __name__ == "__main__":
    sys.exit(main())
