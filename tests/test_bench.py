"""The benchmark scripts still run (short modes): they are how speed claims are checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.timeout(240)
def test_the_engine_benchmark_prints_its_table_in_quick_mode() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--no-dask"],
                          capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stderr[-2000:]
    for label in ("W1 pebbles/s N=50", "W2 split", "W3 latency", "W4 backlog"):
        assert label in done.stdout


def test_the_graph_benchmark_loads_both_graphs() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "graph_bench.py"), "--repeats", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2000 nodes" in done.stdout and "20 nodes" in done.stdout


@pytest.mark.timeout(240)
def test_the_store_stream_under_retention_stays_under_its_size_limit_in_quick_mode() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "store_bench.py"), "--quick"],
                          capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "20,000 pebbles" in done.stdout and "under the 64 MB limit" in done.stdout
