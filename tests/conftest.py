"""Shared pytest configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.ledger import Ledger
from harness.procs import Processes, processes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a slower end-to-end or fault test (still part of CI)")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """``ccworkflow`` subprocesses of one test, killed with their trees at its end."""
    with processes(tmp_path) as started:
        yield started


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """The offered/acknowledged ledger of one fault test."""
    return Ledger(tmp_path / "ledger")
