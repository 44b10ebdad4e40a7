"""A module's result is checked before it is kept: a dict of JSON values within a cap.

``process_task`` must give ``(progress, dict or None)`` (or a bare dict or None); the
dict must hold only JSON values (no NaN or Infinity, no arbitrary objects; paths become
strings) and encode to at most ``max_result_bytes`` (16 MiB unless the run says
otherwise). Anything else fails the job with a message naming the module and what is
wrong, and nothing of the bad result is kept.
"""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from harness.graphs import node
from harness.ledger import Ledger
from harness.procs import Processes
from test_cli_run import args, one_pebble_graph, report

from cryoflow.graph.model import Outcome
from cryoflow.workers.base import DEFAULT_MAX_RESULT_BYTES, JobResult, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.runtime import run_task


def _run(tmp_path: Path, body: str, **fields: Any) -> JobResult:
    module = tmp_path / "returner.py"
    module.write_text("import math, pathlib\n\n\ndef process_task(worker, task):\n"
                      + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n")
    task = Task(id="job-1", pebble_id=1, node="Node", module="returner",
                module_ref=str(module), args={}, **fields)
    return run_task(task, WorkerHandle("test-0"), threading.Event())


def test_the_default_cap_is_16_mib() -> None:
    assert DEFAULT_MAX_RESULT_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize(("body", "message"), [
    ('return 100, "text"',
     "module 'returner' returned str as its result (expected a dict of outputs, or None)"),
    ("return 100, [1, 2]",
     "module 'returner' returned list as its result (expected a dict of outputs, or None)"),
    ('return 100, {"thing": object()}',
     "module 'returner' returned an output that is not JSON: result['thing'] is an object"),
    ('return 100, {"a": [1, {"b": {1, 2}}]}',
     "module 'returner' returned an output that is not JSON: result['a'][1]['b'] is a set"),
    ('return 100, {"x": math.nan}',
     "module 'returner' returned an output that is not JSON: result['x'] is NaN"),
    ('return {"x": [float("inf")]}',
     "module 'returner' returned an output that is not JSON: result['x'][0] is inf"),
    ("return 100, {3: 'three'}",
     "module 'returner' returned an output that is not JSON: result has the key 3, "
     "not a string"),
])
def test_a_result_that_is_not_a_dict_of_json_values_fails_the_job_naming_the_module(
        tmp_path: Path, body: str, message: str) -> None:
    result = _run(tmp_path, body)
    assert result.outcome is Outcome.ERROR
    assert result.error is not None and result.error.startswith(message), result.error
    assert result.retval is None


def test_a_result_over_the_cap_fails_the_job_saying_the_limit(tmp_path: Path) -> None:
    result = _run(tmp_path, 'return 100, {"blob": "x" * 5000}', max_result_bytes=4096)
    assert result.outcome is Outcome.ERROR and result.retval is None
    assert result.error == (
        "module 'returner' returned a result larger than 4096 bytes (max_result_bytes); "
        "write big data to a file and return its path")


def test_a_result_over_the_default_cap_fails_without_holding_a_copy(tmp_path: Path) -> None:
    result = _run(tmp_path, 'return 100, {"blob": "x" * (17 * 1024 * 1024)}')
    assert result.outcome is Outcome.ERROR
    assert "larger than 16777216 bytes" in (result.error or "")


def test_a_result_just_under_the_cap_is_kept(tmp_path: Path) -> None:
    result = _run(tmp_path, 'return 100, {"blob": "x" * 4000}', max_result_bytes=4096)
    assert result.outcome is Outcome.SUCCESS and result.retval == {"blob": "x" * 4000}


def test_paths_and_tuples_become_strings_and_lists(tmp_path: Path) -> None:
    result = _run(tmp_path, 'return 100, {"dst": pathlib.Path("/data/x"), "t": (1, "a")}')
    assert result.outcome is Outcome.SUCCESS
    assert result.retval == {"dst": "/data/x", "t": [1, "a"]}


def test_a_failing_module_with_a_bad_result_keeps_its_own_error(tmp_path: Path) -> None:
    result = _run(tmp_path, 'return 42, {"x": object()}')
    assert result.outcome is Outcome.ERROR and result.retval is None
    assert result.error == "module returned progress 42 (expected 100); module 'returner' " \
        "returned an output that is not JSON: result['x'] is an object"


def test_max_result_bytes_on_the_command_line_fails_a_large_result(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "big.py").write_text(
        'ccmodule = {"description": "A big result", "inputs": {}, "outputs": {"blob": ""}}\n\n'
        "def process_task(worker, task):\n"
        '    return 100, {"blob": "x" * 3000}\n')
    graph = one_pebble_graph(tmp_path, ledger, node("Big", "big"))
    code, output = procs.run(graph, "--modules", str(folder), "--max-result-bytes", "2000",
                             *args(tmp_path))
    assert code == 1, output
    state = report(tmp_path)["pebbles"][0]["nodes"]["Big"]
    assert state["outcome"] == "error"
    assert state["error"].startswith("module 'big' returned a result larger than 2000 bytes")
    code, output = procs.run(graph, "--modules", str(folder), "--max-result-bytes", "x",
                             *args(tmp_path))
    assert code == 2 and "--max-result-bytes" in output
