"""Shared pytest configuration."""

from __future__ import annotations

import ast
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.ledger import Ledger
from harness.procs import Processes, processes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a slower end-to-end or fault test (still part of CI)")
    if sys.version_info < (3, 12):
        _one_ast_parse_at_a_time()


def _one_ast_parse_at_a_time() -> None:
    """Serialise ``ast.parse`` across this process's threads.

    CPython 3.11's AST builder keeps its depth counter per interpreter, so two threads
    building trees at once can raise a spurious ``SystemError`` (fixed in 3.12). Tests
    run heads in threads beside Hypothesis, which parses lambdas to describe strategies,
    while the heads' tracebacks are formatted (3.11 parses source lines for the carets).
    The product copes with the error where it formats a job's traceback
    (``workers.runtime.traceback_of``, tested on its own); here it would only be noise.
    """
    parse, lock = ast.parse, threading.RLock()

    def serialised(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return parse(*args, **kwargs)

    ast.parse = serialised


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """``ccworkflow`` subprocesses of one test, killed with their trees at its end."""
    with processes(tmp_path) as started:
        yield started


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """The offered/acknowledged ledger of one fault test."""
    return Ledger(tmp_path / "ledger")
