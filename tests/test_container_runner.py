"""The in-container runner (``python -m cryoflow.workers.container``) and the line protocol.

The runner runs here as a plain process, exactly as a container's command would; the
Docker and Kubernetes tests run it inside containers and pods.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from executorkit import task

from cryoflow.graph.model import Outcome, WorkerClass, frozen_map
from cryoflow.workers import lineproto
from cryoflow.workers.base import Task
from cryoflow.workers.lineproto import Log, ProtocolReader, Record, Status, parse_line

pytestmark = pytest.mark.timeout(60)


def run_runner(
    job: Task, *, via: str = "env", python_code: str | None = None, tmp_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the runner on ``job``; the task comes by env variable, file or stdin."""
    text = lineproto.task_to_json(job)
    env = {**os.environ, "CRYOFLOW_TASK": text if via == "env" else ""}
    stdin = text if via == "stdin" else ""
    if via == "file":
        assert tmp_path is not None
        (tmp_path / "task.json").write_text(text)
        env["CRYOFLOW_TASK_FILE"] = str(tmp_path / "task.json")
    command = ["-c", python_code] if python_code else ["-m", "cryoflow.workers.container"]
    return subprocess.run(
        [sys.executable, *command], input=stdin, env=env, capture_output=True, text=True, timeout=30
    )


def messages(stdout: str) -> list[Any]:
    return [parse_line(line) for line in stdout.splitlines()]


def copy_job(tmp_path: Path) -> Task:
    (tmp_path / "in.txt").write_text("snow")
    return task(
        "copy_upper",
        "3/Upper#1",
        {"src": str(tmp_path / "in.txt"), "dst": str(tmp_path)},
        files={"src": {"type": "file"}, "dst": {"type": "dir"}},
    )


@pytest.mark.parametrize("via", ["env", "file", "stdin"])
def test_the_runner_reads_its_task_and_speaks_the_line_protocol(via: str, tmp_path: Path) -> None:
    done = run_runner(copy_job(tmp_path), via=via, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    found = messages(done.stdout)
    assert found[:3] == [
        Status("progress", 10),
        Log("INFO", "read 4 characters from in.txt"),
        Status("progress", 100),
    ]
    assert [m.name for m in found[3:]] == ["stats", "outcome", "retval"]
    assert found[-2:] == [
        Record("outcome", "success"),
        Record("retval", {"out": str(tmp_path / "in.txt.upper"), "chars": 4}),
    ]
    assert (tmp_path / "in.txt.upper").read_text() == "SNOW"


def test_a_print_becomes_a_log_line_and_a_childs_output_goes_to_stderr() -> None:
    done = run_runner(task("chatty", "1/Chat#1"))
    assert done.returncode == 0, done.stderr
    found = messages(done.stdout)
    assert Log("INFO", "hello from print") in found
    assert Log("INFO", "[fake] status from print") in found  # not taken for a status
    assert Status("stage", {"name": "done", "items": [1, 2]}) in found
    assert "hello from a child" in done.stderr
    assert "hello from a child" not in done.stdout


def test_a_failing_module_reports_its_error_and_exits_1() -> None:
    done = run_runner(task("fail_loud", "1/Fail#1", {"how": "raise"}))
    assert done.returncode == 1
    records = {m.name: m.value for m in messages(done.stdout) if isinstance(m, Record)}
    assert (records["outcome"], records["error"]) == ("error", "ValueError: probe failure")
    assert "fail_loud.py" in records["stats"]["traceback"]
    assert "something went wrong inside" in done.stderr


def test_sigterm_sets_the_cancel_event_of_the_running_job() -> None:
    env = {
        **os.environ,
        "CRYOFLOW_TASK": lineproto.task_to_json(task("sleepy", "1/Sleep#1", {"seconds": 30})),
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "cryoflow.workers.container"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    assert runner.stdout is not None
    assert runner.stdout.readline().startswith("[heartbeat] ")
    runner.send_signal(signal.SIGTERM)
    rest = runner.stdout.read()
    assert runner.wait(10) == 1
    assert Record("outcome", "cancel") in messages(rest)


def test_the_runner_needs_no_pyyaml(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['yaml'] = None\n"
        "from cryoflow.workers.container import main; sys.exit(main())"
    )
    done = run_runner(copy_job(tmp_path), python_code=code)
    assert done.returncode == 0, done.stderr
    assert Record("outcome", "success") in messages(done.stdout)


# The line protocol


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[progress] 42", Status("progress", 42)),
        ('[stage] "download"', Status("stage", "download")),
        ("[note] plain words", Status("note", "plain words")),
        ("<warning> disk is full", Log("WARNING", "disk is full")),
        ('{retval} {"a": [1, 2]}', Record("retval", {"a": [1, 2]})),
        ('{outcome} "cancel"', Record("outcome", "cancel")),
        ("{other} 1", Log("INFO", "{other} 1")),
        ("just text\n", Log("INFO", "just text")),
        ("[a b] 1", Log("INFO", "[a b] 1")),
    ],
)
def test_each_kind_of_line_is_read(line: str, message: Any) -> None:
    assert parse_line(line) == message


def test_formatted_lines_read_back_as_what_was_written() -> None:
    value = {"x": [1, 2.5, None], "y": "z"}
    assert parse_line(lineproto.format_status("a key", value)) == Status("a_key", value)
    assert [
        parse_line(line) for line in lineproto.format_log("info", "two\nlines").splitlines()
    ] == [Log("INFO", "two"), Log("INFO", "lines")]
    assert parse_line(lineproto.format_record("retval", (1, {2}))) == Record("retval", [1, [2]])
    with pytest.raises(ValueError, match="unknown line protocol record"):
        lineproto.format_record("nope", 1)


def test_lines_split_across_chunks_are_joined_and_overlong_lines_are_cut() -> None:
    splitter = lineproto.LineSplitter(max_line_bytes=8)
    got = [*splitter.feed(b"[a] 1\n[b"), *splitter.feed(b"] 2\nxxxxxxxxxxyy"), *splitter.close()]
    assert got == ["[a] 1\n", "[b] 2\n", "xxxxxxxx", "xxyy"]


def test_a_task_survives_its_json_form() -> None:
    original = Task(
        id="1/A/2#3",
        pebble_id=1,
        node="A",
        module="m",
        module_ref=None,
        args=frozen_map({"a": [1, {"b": None}]}),
        worker_class=WorkerClass.GPU,
        files=frozen_map({"a": {"type": "file"}}),
        timeout_s=2.5,
        post=({"output": "o", "target": "/t"},),
        volumes=(("/s", "/d", "ro"),),
        module_paths=("/m",),
        extra=frozen_map({"network": "host"}),
    )
    text = lineproto.task_to_json(original)
    assert lineproto.task_from_json(text) == original
    assert "ccnode" not in json.loads(text)  # defaults are left out


def reader_with(*lines: str, stderr: bytes = b"") -> ProtocolReader:
    reader = ProtocolReader(lambda key, value: None, lambda level, message: None)
    for line in lines:
        reader.read_line(line)
    reader.feed_stderr(stderr)
    reader.close()
    return reader


@pytest.mark.parametrize(
    ("lines", "code", "oom", "outcome", "error"),
    [
        (['{retval} {"a": 1}'], 0, False, Outcome.SUCCESS, None),
        (
            ['{outcome} "error"', '{error} "ValueError: x"'],
            1,
            False,
            Outcome.ERROR,
            "ValueError: x",
        ),
        ([], 3, False, Outcome.ERROR, "container exited with code 3"),
        (
            ['{outcome} "success"'],
            137,
            True,
            Outcome.ERROR,
            "container exited with code 137 (killed: out of memory)",
        ),
        ([], 137, False, Outcome.ERROR, "container exited with code 137 (killed by SIGKILL)"),
        (
            ['{outcome} "bogus"'],
            1,
            False,
            Outcome.ERROR,
            "the job reported an unknown outcome 'bogus'",
        ),
    ],
)
def test_the_outcome_comes_from_the_records_and_the_exit_code(
    lines: list[str], code: int, oom: bool, outcome: Outcome, error: str | None
) -> None:
    result = reader_with(*lines).result(code, oom_killed=oom)
    assert (result.outcome, result.error) == (outcome, error)


def test_a_failing_job_carries_the_last_lines_of_its_stderr() -> None:
    lines = b"".join(b"line %d\n" % i for i in range(30))
    result = reader_with(stderr=lines).result(2)
    assert result.error == "container exited with code 2; stderr: " + " | ".join(
        f"line {i}" for i in range(10, 30)
    )
