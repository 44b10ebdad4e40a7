"""``ccstatus`` and ``cclog`` against a finished run's state folder and a live head's URL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import READ_TOKEN, ServedInThread, served, until

from cryoflow.cli import log as cclog
from cryoflow.cli import status as ccstatus

ROOT = Path(__file__).resolve().parent.parent
FORGED = "x\n2024-01-01 00:00:00.000 ERROR    9/A#1  forged\x1b[31m"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state folder of a finished run: one completed pebble, one failed at A."""
    state = tmp_path_factory.mktemp("run") / "state"

    async def go() -> None:
        async with served(state) as s:
            await s.offer(x="first")
            await s.offer(x=FORGED, fail=True)
            await s.idle()

    asyncio.run(go())
    return state


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServedInThread]:
    """A live head guarded by a token, with one job held running."""
    server = ServedInThread(tmp_path / "state", token=READ_TOKEN)
    gate = tmp_path / "open"

    async def start() -> None:
        await server.served.offer(x="held", gate=str(gate))
        await until(lambda: _running(server))

    server.run(start())
    yield server
    gate.touch()
    server.run(server.served.idle())
    server.close()


async def _running(server: ServedInThread) -> bool:
    head = server.served.head
    return bool(head.progress) and bool(head.store.jobs(state="running"))


def run_main(main: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str,
                                                                                        str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ ccstatus


def test_ccstatus_shows_counts_per_node_for_a_finished_run(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(ccstatus.main, ["--state", str(finished)], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "workflow t: 0 active, 1 completed, 1 failed"
    row_a = next(line for line in lines if line.startswith("A "))
    assert row_a.split() == ["A", "1", "1"]
    assert "running jobs: 0" in lines


def test_ccstatus_json_has_pebbles_nodes_and_running_jobs(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(ccstatus.main, ["--state", str(finished), "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["pebbles"] == {"active": 0, "completed": 1, "failed": 1}
    assert {"name": "B", "counts": {"success": 1, "skipped": 1}} in summary["nodes"]
    assert summary["running"] == []


def test_ccstatus_follows_a_live_head_with_progress_and_workers(
        live: ServedInThread, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYOFLOW_API_TOKEN", READ_TOKEN)
    argv = ["--url", live.url, "--follow", "--count", "2", "--interval", "0.05", "--json"]
    code, out, _ = run_main(ccstatus.main, argv, capsys)
    refreshes = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(refreshes) == 2
    job = refreshes[-1]["running"][0]
    assert (job["id"], job["progress"]) == ("1/A#1", 10)
    assert {"class": "normal", "capacity": 2, "busy": 1} in refreshes[-1]["classes"]
    assert [n["name"] for n in refreshes[-1]["nodes"]] == ["In", "A", "B"]


def test_ccstatus_text_shows_a_progress_bar_for_a_running_job(
        live: ServedInThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(ccstatus.main, ["--url", live.url, "--token", READ_TOKEN], capsys)
    assert code == 0
    assert "  1/A#1  [##                  ]  10%" in out
    assert "normal 1/2 busy" in out


def test_ccstatus_says_when_the_head_wants_a_token(
        live: ServedInThread, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYOFLOW_API_TOKEN", raising=False)
    code, _, err = run_main(ccstatus.main, ["--url", live.url], capsys)
    assert code == 2 and "needs a token; set CRYOFLOW_API_TOKEN" in err


def test_ccstatus_says_when_no_head_answers(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(ccstatus.main, ["--url", "http://127.0.0.1:9/"], capsys)
    assert code == 2 and "cannot reach the head at http://127.0.0.1:9/" in err


def test_without_flags_the_only_state_folder_under_dot_cryoflow_is_read(
        finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(ccstatus.main, [], capsys)
    assert code == 2 and "say what to read with --state DIR or --url URL" in err
    (tmp_path / ".cryoflow").mkdir()
    (tmp_path / ".cryoflow" / "t").symlink_to(finished)
    code, out, _ = run_main(ccstatus.main, [], capsys)
    assert code == 0 and out.startswith("workflow t:")


SPLIT_WITH_A_FAILING_BRANCH = {"workflow": {"name": "split", "nodes": [
    {"name": "Start", "module": "cmdline"},
    {"name": "Work", "module": "bash", "downstreamOf": ["Start"], "splitOn": "script",
     "args": {"script": ["exit 0", "exit 3", "exit 0"]}},
    {"name": "Join", "module": "noop", "downstreamOf": ["Work"], "merge": True}]}}


def _summary_rows(stdout: str) -> list[tuple[str, dict[str, int]]]:
    """The node table of ccworkflow's end-of-run summary: ``[(node, {outcome: n})]``.

    Its counts are right-aligned under their outcome, and a zero is left blank.
    """
    lines = stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.split()[:1] == ["node"])
    header = lines[first]
    ends = {col: header.index(col) + len(col) for col in header.split()[1:]}
    rows = []
    for line in lines[first + 1:]:
        if not line.strip():
            break
        cells = {col: int(line[:end].split()[-1]) for col, end in ends.items()
                 if len(line) >= end and line[end - 1] != " "}
        rows.append((line.split()[0], cells))
    return rows


@pytest.mark.parametrize("workflow", ["demo", "split"])
def test_ccstatus_counts_each_node_as_the_end_of_run_summary_does_in_graph_order(
        workflow: str, tmp_path: Path) -> None:
    if workflow == "demo":
        graph = ROOT / "workflows" / "demo.json"
    else:
        graph = tmp_path / "split.json"
        graph.write_text(json.dumps(SPLIT_WITH_A_FAILING_BRANCH))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOFLOW_")}
    env["COLUMNS"] = "120"
    bin_dir = Path(sys.executable).parent
    run = subprocess.run([str(bin_dir / "ccworkflow"), str(graph), "--no-http"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=90, env=env)
    assert run.returncode == (0 if workflow == "demo" else 1), run.stderr
    shown = subprocess.run([str(bin_dir / "ccstatus"), "--state", f".cryoflow/{workflow}",
                            "--json"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60, env=env)
    nodes = json.loads(shown.stdout)["nodes"]
    assert [(n["name"], n["counts"]) for n in nodes] == _summary_rows(run.stdout)
    expected = {"demo": [("Start", {"success": 1}), ("Spread", {"success": 5}),
                         ("Measure", {"success": 5}), ("Gather", {"success": 1}),
                         ("Report", {"success": 1})],
                "split": [("Start", {"success": 1}), ("Work", {"success": 2, "error": 1}),
                          ("Join", {"error": 1})]}[workflow]
    assert _summary_rows(run.stdout) == expected


# ------------------------------------------------------------------ cclog


def test_cclog_prints_every_line_with_control_characters_escaped(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(cclog.main, ["--state", str(finished)], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 6
    # the two pebbles' A jobs run at once, so their lines may come in either order
    assert any(line.endswith("INFO     1/A#1  gate passed for first") for line in lines)
    assert "\x1b" not in out
    assert not any(line.startswith("2024-01-01") for line in lines)
    assert any(line.endswith("gate passed for x\\n2024-01-01 00:00:00.000 ERROR    9/A#1  "
                             "forged\\x1b[31m") for line in lines)
    assert any(line.endswith("ERROR    pebble 2  A attempt 1 failed: RuntimeError: asked to "
                             "fail on x (+1 more lines) (at gate.py:26 in "
                             "process_task)") for line in lines)
    assert any(line.endswith("WARNING  pebble 2  pebble 2 failed at A") for line in lines)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--pebble", "1"], ["gate passed for first", "gate passed for first"]),
    (["--node", "B"], ["gate passed for first"]),
    (["--level", "warning"], ["failing on", "A attempt 1 failed", "pebble 2 failed at A"]),
    (["--grep", r"passed for f\w+t$"], ["gate passed for first", "gate passed for first"]),
    (["--since", "1h"], None),
    (["--since", str(time.time() + 3600)], []),
])
def test_cclog_filters_by_pebble_node_level_pattern_and_time(
        finished: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        expected: list[str] | None) -> None:
    code, out, _ = run_main(cclog.main, ["--state", str(finished), "--json", *flags], capsys)
    messages = [json.loads(line)["message"] for line in out.splitlines()]
    assert code == 0
    if expected is None:
        assert len(messages) == 6
    else:
        assert [m[: len(e)] for m, e in zip(messages, expected)] == expected
        assert len(messages) == len(expected)


def test_cclog_refuses_a_bad_pattern_and_a_bad_time(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(cclog.main, ["--state", str(finished), "--grep", "("], capsys)
    assert code == 2 and "is not a regular expression" in err
    code, _, err = run_main(cclog.main, ["--state", str(finished), "--since", "noon"], capsys)
    assert code == 2 and "is not a time" in err


def test_cclog_says_on_stderr_when_no_line_was_printed(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(cclog.main, ["--state", str(finished), "--node", "nowhere"],
                              capsys)
    assert (code, out) == (0, "") and "no log lines match --node" in err
    code, out, err = run_main(cclog.main, ["--state", str(finished)], capsys)
    assert out and err == ""


def test_since_reads_seconds_iso_times_and_ages() -> None:
    assert cclog.parse_since("1000.5", now=5000) == 1000.5
    assert cclog.parse_since("10m", now=5000) == 4400
    assert cclog.parse_since("1d", now=100_000) == 100_000 - 86_400
    assert cclog.parse_since("2024-05-01T12:00:00+00:00", now=0) == 1714564800


def test_cclog_follows_a_live_head_until_interrupted(live: ServedInThread) -> None:
    env = {**os.environ, "CRYOFLOW_API_TOKEN": READ_TOKEN, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cryoflow.cli.log", "--url", live.url, "--follow",
               "--interval", "0.05", "--node", "A"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        assert proc.stdout is not None
        live.run(live.served.offer(x="late"))
        (live.served.state.parent / "open").touch()
        lines = proc.stdout.readline() + proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert "1/A#1  gate passed for held" in lines
    assert "2/A#1  gate passed for late" in lines
    assert proc.returncode == 0, err
