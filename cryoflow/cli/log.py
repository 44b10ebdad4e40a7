"""``cclog [--state DIR | --url URL] [--follow] [filters]``: a workflow's log lines.

Filters: ``--pebble ID``, ``--node N``, ``--level L`` (that level and above),
``--grep RE`` (a Python regular expression searched in the message) and ``--since T``
(Unix seconds, an ISO 8601 time, or an age such as ``90s``, ``10m``, ``2h``, ``1d``).
``--follow`` keeps printing new lines until Ctrl-C. Control characters in messages are
printed as escapes, so a line cannot forge another. Exit codes: 0, or 2 for a bad
flag or a source that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from cryoflow.api.client import Source, SourceError, add_source_flags, printable, source_from_args
from cryoflow.cli.common import Parser, first_line, quiet_pipe

EXIT_OK, EXIT_INVALID = 0, 2
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PAGE = 1000

Line = dict[str, Any]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cclog", description=first_line(__doc__))
    add_source_flags(parser)
    parser.add_argument("--follow", "-f", action="store_true", help="print new lines until Ctrl-C")
    parser.add_argument("--interval", type=float, default=0.5, metavar="S",
                        help="seconds between reads with --follow (default 0.5)")
    parser.add_argument("--pebble", type=int, metavar="ID", help="only this pebble's lines")
    parser.add_argument("--node", metavar="N", help="only this node's lines")
    parser.add_argument("--level", metavar="L", type=str.upper, choices=sorted(LEVELS),
                        help="only lines of this level and above (DEBUG ... CRITICAL)")
    parser.add_argument("--grep", metavar="RE", help="only lines whose message matches RE")
    parser.add_argument("--since", metavar="T", help="only lines from T on (seconds, ISO, 10m)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    return parser


def parse_since(text: str, now: float) -> float:
    """Unix seconds from ``1714550400``, ``2024-05-01T12:00`` or an age like ``10m``."""
    try:
        return float(text)
    except ValueError:
        pass
    age = AGE.fullmatch(text.strip())
    if age:
        return now - float(age.group(1)) * UNIT_S[age.group(2)]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise SourceError(f"--since {text!r} is not a time; give Unix seconds, an ISO time "
                          "like 2024-05-01T12:00, or an age like 10m") from None


def line_filter(args: argparse.Namespace) -> Callable[[Line], bool]:
    """The client-side part of the filters: minimum level and the regular expression."""
    try:
        pattern = re.compile(args.grep) if args.grep else None
    except re.error as exc:
        raise SourceError(f"--grep {args.grep!r} is not a regular expression: {exc}") from None
    least = LEVELS.get(args.level or "", 0)

    def keep(line: Line) -> bool:
        level_ok = LEVELS.get(str(line["level"]).upper(), 100) >= least
        return level_ok and (pattern is None or bool(pattern.search(line["message"])))

    return keep


def read_lines(source: Source, args: argparse.Namespace, since: float | None) -> Iterator[Line]:
    """Every line after the cursor, a page at a time; with --follow, forever."""
    after = 0
    while True:
        rows = source.logs(after=after, pebble=args.pebble, node=args.node, since=since,
                           limit=PAGE)
        yield from rows
        if rows:
            after = rows[-1]["id"]
        if len(rows) < PAGE:
            if not args.follow:
                return
            time.sleep(args.interval)


def format_line(line: Line) -> str:
    """``2024-05-01 12:00:00.123 INFO     12/A#1  message`` with control characters escaped."""
    stamp = datetime.fromtimestamp(line["ts"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    who = line["job_id"] or (f"pebble {line['pebble_id']}" if line["pebble_id"] else "head")
    return f"{stamp} {printable(line['level']):<8} {printable(who)}  {printable(line['message'])}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cclog`` with ``argv``; return the exit code (a closed pipe ends it quietly)."""
    return quiet_pipe(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        keep = line_filter(args)
        since = parse_since(args.since, time.time()) if args.since else None
        source = source_from_args(args)
    except SourceError as exc:
        return fail(exc)
    shown = 0
    try:
        for line in read_lines(source, args, since):
            if keep(line):
                print(json.dumps(line) if args.json else format_line(line), flush=args.follow)
                shown += 1
        if not shown:
            print(f"cclog: {_nothing(args)}", file=sys.stderr)
    except SourceError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    return EXIT_OK


def _nothing(args: argparse.Namespace) -> str:
    """What to say when no line was printed (on stderr, so a pipe reads nothing)."""
    filters = [flag for flag in ("pebble", "node", "level", "grep", "since")
               if getattr(args, flag) is not None]
    if filters:
        return "no log lines match " + ", ".join(f"--{flag}" for flag in filters)
    return "no log lines yet (jobs log what their modules write with worker.log)"


def fail(exc: Exception) -> int:
    print(f"cclog: {exc}", file=sys.stderr)
    return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
