"""``cryoflow``: the Python-API side of cryoflow on the command line.

- ``cryoflow flow list|add|run|node|edge|view``: Cloudmesh-style flows (:mod:`.flow`);
- ``cryoflow submit SPEC``, ``cryoflow get ID``, ``cryoflow cancel ID``: function-spec
  workflows on a running head (:mod:`.submit`).

Exit codes: 0 done, 1 a run failed, 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import cryoflow
from cryoflow.cli import flow, submit
from cryoflow.cli.common import Parser, first_line, quiet_pipe
from cryoflow.errors import CryoflowError

EXIT_INVALID = 2


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cryoflow", description=first_line(__doc__))
    parser.add_argument("--version", action="version",
                        version=f"cryoflow {cryoflow.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    flow.add_commands(commands)
    submit.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cryoflow`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    return quiet_pipe(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_INVALID
    try:
        return int(args.handler(args))
    except CryoflowError as exc:
        return submit.fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
