"""What every cryoflow command shares: flag suggestions and a quiet closed pipe."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import NoReturn

_UNKNOWN = re.compile(r"unrecognized arguments: (.+)")


class Parser(argparse.ArgumentParser):
    """An argument parser that suggests the closest flag for a mistyped one.

    ``retired`` maps flags of the tools cryoflow replaces to what to use instead; such a
    flag is refused with that sentence rather than a guess.
    """

    retired: Mapping[str, str] = {}

    def error(self, message: str) -> NoReturn:
        match = _UNKNOWN.search(message)
        if match:
            words = match.group(1).split()
            flags = (word.split("=", 1)[0] for word in words)
            known = [self.retired[flag] for flag in flags if flag in self.retired]
            if known:
                super().error("; ".join(known))
            hints = [self.suggest(word) for word in words]
            message += "".join(f"; did you mean {hint}?" for hint in hints if hint)
        super().error(message)

    def suggest(self, word: str) -> str | None:
        """The known flag closest to ``word`` (its ``=value`` ignored), or None."""
        if not word.startswith("-"):
            return None
        flag = word.split("=", 1)[0]
        known = [s for action in self._actions for s in action.option_strings]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        return close[0] if close else None


def first_line(doc: str | None) -> str:
    """A module docstring's first line without its reStructuredText ````literal```` marks."""
    return (doc or "").strip().splitlines()[0].replace("``", "") if doc else ""


def quiet_pipe(main: Callable[[], int]) -> int:
    """Run ``main``; a reader that went away (``| head``) ends it without a traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
