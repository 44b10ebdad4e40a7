"""What a new user meets first: the commands as typed in a shell, and what they print.

Every test runs the installed console scripts (``ccworkflow``, ``ccstatus``, ``cclog``,
``cryoflow``) as separate processes, the way a user starts them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def cc(*argv: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run a cryoflow command (``ccworkflow``, ``ccstatus``, ...) in ``cwd``."""
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=_env())


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOFLOW_")}
    return {**env, "COLUMNS": "120"}


def write_graph(folder: Path, name: str, nodes: list[dict[str, Any]], **extra: Any) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"workflow": {"name": name, "nodes": nodes, **extra}}))
    return path


START = {"name": "Start", "module": "cmdline"}
BOOM = {"name": "Boom", "module": "bash", "downstreamOf": ["Start"],
        "args": {"script": "echo working on it; echo about to fail >&2; exit 3"}}
HANDLE = {"name": "Handle", "module": "noop", "downstreamOf": ["Boom"], "runOn": "error"}


class Running:
    """A ``ccworkflow`` left running, with its stderr read line by line."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], cwd=cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_env())
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.seen)}")

    def interrupt(self, timeout_s: float = 30.0) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        run.kill()


def orders_graph(folder: Path, port: int) -> Path:
    """A graph whose netwatcher input keeps the head running."""
    return write_graph(folder, "orders", [
        {"name": "Orders", "module": "netwatcher", "args": {"port": port}},
        {"name": "Work", "module": "noop", "downstreamOf": ["Orders"]}])


# ------------------------------------------------------------------ the summary


def test_a_failing_node_prints_its_name_its_error_and_last_log_lines_and_exits_1(
        tmp_path: Path) -> None:
    graph = write_graph(tmp_path, "boom", [START, BOOM])
    done = cc("ccworkflow", str(graph), "--no-http", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "boom: 1 pebble finished in" in out and "0 completed, 1 failed" in out
    assert "failed: pebble 1, node Boom (error)" in out
    assert "RuntimeError: bash exited with code 3: about to fail" in out
    assert "last log lines:" in out and "working on it" in out
    assert "cclog --state .cryoflow/boom --pebble 1" in out
    hints = [line for line in out.splitlines() if line.startswith("  cc")]
    assert len(hints) == 2 and len({line.index("#") for line in hints}) == 1  # one column
    assert "Traceback" not in out + done.stderr


def test_an_error_handled_downstream_is_still_reported_and_the_run_exits_0(
        tmp_path: Path) -> None:
    graph = write_graph(tmp_path, "handled", [START, BOOM, HANDLE])
    done = cc("ccworkflow", str(graph), "--no-http", "--report", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 completed, 0 failed, 1 handled error" in done.stdout
    assert "handled error: pebble 1, node Boom (error)" in done.stdout
    assert "bash exited with code 3: about to fail" in done.stdout
    assert "the report: out.json" in done.stdout


def test_a_run_without_http_prints_the_summary_with_the_node_outcomes(tmp_path: Path) -> None:
    shutil.copy(ROOT / "workflows" / "demo.json", tmp_path)
    done = cc("ccworkflow", "demo.json", "--no-http", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.match(r"demo: 1 pebble finished in \d+\.\d s — 1 completed, 0 failed$", lines[0])
    table = {line.split()[0]: line.split()[1:] for line in lines[1:7]}
    assert table["node"] == ["success"] and table["Measure"] == ["5"]
    assert "--stay" not in done.stdout  # no web view to keep without HTTP
    assert "web view and API at" not in done.stderr
    log = cc("cclog", "--state", ".cryoflow/demo", cwd=tmp_path)  # its modules log nothing
    assert (log.returncode, log.stdout) == (0, "") and "no log lines yet" in log.stderr


def test_a_second_run_counts_only_its_own_pebbles(tmp_path: Path) -> None:
    shutil.copy(ROOT / "workflows" / "demo.json", tmp_path)
    cc("ccworkflow", "demo.json", "--no-http", cwd=tmp_path)
    again = cc("ccworkflow", "demo.json", "--no-http", "--items", "0", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("demo: 1 pebble finished in")
    status = cc("ccstatus", "--state", ".cryoflow/demo", cwd=tmp_path)
    assert "2 completed" in status.stdout


def test_stay_keeps_the_web_view_after_the_run_until_ctrl_c(
        tmp_path: Path, running: list[Running]) -> None:
    shutil.copy(ROOT / "workflows" / "demo.json", tmp_path)
    run = Running(["ccworkflow", "demo.json", "--stay"], tmp_path)
    running.append(run)
    url = run.wait_for(r"web view and API at (\S+)").group(1)
    run.wait_for("the web view stays open; Ctrl-C ends it")
    with urllib.request.urlopen(url + "api/v1/workflow", timeout=10) as answer:
        assert json.load(answer)["pebbles"]["completed"] == 1
    code, out = run.interrupt()
    assert code == 0
    assert f"the web view: {url}" in out


def test_the_readme_tour_says_what_the_readme_promises(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    graph = re.search(r"<!-- file: scenes.json -->\n```json\n(.*?)```", readme, re.S)
    assert graph is not None
    (tmp_path / "scenes.json").write_text(graph.group(1))
    with zipfile.ZipFile(tmp_path / "s1.zip", "w") as archive:
        archive.writestr("s1/b1.txt", "band 1")
    shown = cc("ccworkflow", "scenes.json", "--help", cwd=tmp_path)
    assert shown.returncode == 0 and "--src FILE" in shown.stdout
    ran = cc("ccworkflow", "scenes.json", "--src", "s1.zip", "--report", "out.json",
             cwd=tmp_path)
    assert ran.returncode == 0 and "1 completed, 0 failed" in ran.stdout
    assert "b1.txt" in cc("cclog", "--state", ".cryoflow/Scenes", cwd=tmp_path).stdout
    (tmp_path / "broken.zip").write_text("not a zip")
    broken = cc("ccworkflow", "scenes.json", "--src", "broken.zip", cwd=tmp_path)
    assert broken.returncode == 0
    assert "handled error: pebble 2, node Unpack (error)" in broken.stdout
    assert "broken.zip" in broken.stdout and "not a zip file" in broken.stdout.lower()
    log = cc("cclog", "--state", ".cryoflow/Scenes", "--pebble", "2", cwd=tmp_path).stdout
    assert "Unpack attempt 1 failed: StagingError: cannot extract broken.zip" in log
    assert "WARNING  2/Alert#1  the scene could not be unpacked" in log  # Alert's stderr


# ------------------------------------------------------------------ validation and inputs


def test_an_unimportable_callable_fails_validation_with_the_reason(tmp_path: Path) -> None:
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps([{"nodename": "gen", "funcname": "nosuchmodule:gen",
                                  "conditions": {"dependencies": []}}]))
    checked = cc("ccworkflow", "specs.json", "--validate", cwd=tmp_path)
    assert checked.returncode == 2
    assert ("node 'gen': cannot import 'nosuchmodule' for 'nosuchmodule:gen': "
            "No module named 'nosuchmodule'") in checked.stderr
    assert "PYTHONPATH" in checked.stderr
    ran = cc("ccworkflow", "specs.json", "--no-http", cwd=tmp_path)
    assert ran.returncode == 2 and "nosuchmodule" in ran.stderr
    (tmp_path / "steps.py").write_text("def gen():\n    return 1\n")
    specs.write_text(json.dumps([{"nodename": "gen", "funcname": "steps:gen",
                                  "conditions": {"dependencies": []}}]))
    env_ok = subprocess.run([str(BIN / "ccworkflow"), "specs.json", "--validate"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**_env(), "PYTHONPATH": str(tmp_path)})
    assert env_ok.returncode == 0, env_ok.stderr


def test_a_busy_input_port_ends_the_head_within_seconds_with_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        graph = orders_graph(tmp_path, port)
        started = time.monotonic()
        done = cc("ccworkflow", str(graph), "--no-http", cwd=tmp_path, timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 2
    assert took < 10, f"the head took {took:.1f} s to give up"
    errors = [line for line in done.stderr.splitlines() if "Orders" in line]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"ccworkflow: input node 'Orders': cannot listen on "
                                f"127.0.0.1:{port}")
    assert errors[0].count("input node 'Orders'") == 1
    assert "Traceback" not in done.stderr


def test_fresh_against_a_running_head_refuses_before_setting_anything_aside(
        tmp_path: Path, running: list[Running]) -> None:
    graph = orders_graph(tmp_path, 0)
    first = Running(["ccworkflow", str(graph)], tmp_path)
    running.append(first)
    first.wait_for("web view and API at")
    second = cc("ccworkflow", str(graph), "--fresh", "--no-http", cwd=tmp_path)
    assert second.returncode == 2
    assert "is locked by pid" in second.stderr
    assert "set aside" not in second.stderr and "setting aside" not in second.stderr
    assert not list((tmp_path / ".cryoflow" / "orders").glob("*.bak"))
    code, _ = first.interrupt()
    assert code == 130


def test_unpacked_archives_go_to_the_work_folder_and_are_gone_after_the_pebble(
        tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with zipfile.ZipFile(inbox / "s1.zip", "w") as archive:
        archive.writestr("s1/b1.txt", "band 1")
    graph = write_graph(tmp_path, "unpack", [
        {"name": "Input", "module": "cmdline"},
        {"name": "Staged", "module": "noop", "downstreamOf": ["Input"],
         "args": {"files": {"option": "src", "type": "file", "unzip": True}}},
        {"name": "Unpack", "module": "unzip", "downstreamOf": ["Input"],
         "args": {"src": {"option": "src"}, "dst": {"type": "tempdir", "id": "work"}}}],
        options={"src": {"type": "file", "required": True}})
    done = cc("ccworkflow", str(graph), "--src", "inbox/s1.zip", "--no-http",
              "--report", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    nodes = json.loads((tmp_path / "out.json").read_text())["pebbles"][0]["nodes"]
    staged = Path(nodes["Staged"]["output"]["files"][0])
    unpacked = Path(nodes["Unpack"]["output"]["files"][0])
    assert staged.name == unpacked.name == "s1"
    assert [p.name for p in inbox.iterdir()] == ["s1.zip"]  # nothing beside the archive
    assert not staged.exists() and not unpacked.exists()  # removed with the pebble


# ------------------------------------------------------------------ tokens


def test_listening_beyond_localhost_needs_a_token_file_and_then_asks_for_it(
        tmp_path: Path, running: list[Running]) -> None:
    graph = orders_graph(tmp_path, 0)
    refused = cc("ccworkflow", str(graph), "--http", "0.0.0.0:0", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--token-file FILE" in refused.stderr and "CRYOFLOW_API_TOKEN" in refused.stderr
    assert "--token-file FILE" in cc("ccworkflow", "--help", cwd=tmp_path).stdout
    (tmp_path / "token").write_text("s3cret-read-token\n")
    run = Running(["ccworkflow", str(graph), "--http", "0.0.0.0:0", "--token-file", "token"],
                  tmp_path)
    running.append(run)
    url = run.wait_for(r"web view and API at (\S+)").group(1)
    port = url.rstrip("/").rsplit(":", 1)[1]
    api = f"http://127.0.0.1:{port}/api/v1/workflow"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(api, timeout=10)
    assert denied.value.code == 401
    asked = urllib.request.Request(api, headers={"Authorization": "Bearer s3cret-read-token"})
    with urllib.request.urlopen(asked, timeout=10) as answer:
        assert json.load(answer)["name"] == "orders"
    run.interrupt()


def test_an_empty_token_file_is_refused_with_what_to_put_in_it(tmp_path: Path) -> None:
    graph = orders_graph(tmp_path, 0)
    (tmp_path / "token").write_text("two words\n")
    done = cc("ccworkflow", str(graph), "--token-file", "token", cwd=tmp_path)
    assert done.returncode == 2
    assert "token file token must hold one token" in done.stderr


# ------------------------------------------------------------------ the other commands


def test_ccstatus_and_cclog_read_a_state_folder_given_as_a_relative_path(
        tmp_path: Path) -> None:
    graph = write_graph(tmp_path, "boom", [START, BOOM])
    cc("ccworkflow", str(graph), "--no-http", cwd=tmp_path)
    status = cc("ccstatus", "--state", ".cryoflow/boom", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("workflow boom: 0 active, 0 completed, 1 failed")
    log = cc("cclog", "--state", ".cryoflow/boom", "--pebble", "1", cwd=tmp_path)
    assert log.returncode == 0, log.stderr
    assert "working on it" in log.stdout


def test_cclog_says_why_and_where_a_pebble_failed(tmp_path: Path) -> None:
    graph = write_graph(tmp_path, "boom", [START, BOOM])
    cc("ccworkflow", str(graph), "--no-http", cwd=tmp_path)
    lines = cc("cclog", "--state", ".cryoflow/boom", "--pebble", "1",
               cwd=tmp_path).stdout.splitlines()
    failed = [line for line in lines if "Boom attempt 1 failed:" in line]
    assert len(failed) == 1 and " ERROR " in failed[0]
    assert "RuntimeError: bash exited with code 3: about to fail (at " in failed[0]
    assert lines[-1].endswith("WARNING  pebble 1  pebble 1 failed at Boom")


@pytest.mark.parametrize("argv", [
    ["cclog", "--state", ".cryoflow/boom", "--json"],
    ["ccstatus", "--state", ".cryoflow/boom", "--json"],
    ["cryoflow", "flow", "list"],
])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path, argv: list[str]) -> None:
    graph = write_graph(tmp_path, "boom", [START, BOOM])
    cc("ccworkflow", str(graph), "--no-http", cwd=tmp_path)
    read, write = os.pipe()
    os.close(read)  # like `| head` that has already exited
    try:
        done = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=tmp_path, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=_env())
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.returncode == 0


def test_cryoflow_has_a_version_and_help_without_markup(tmp_path: Path) -> None:
    version = cc("cryoflow", "--version", cwd=tmp_path)
    assert version.returncode == 0 and re.fullmatch(r"cryoflow \d+\.\d+\.\d+\n", version.stdout)
    for command in ("cryoflow", "ccstatus", "cclog", "ccworkflow"):
        shown = cc(command, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and "``" not in shown.stdout, command


@pytest.mark.parametrize(("argv", "hint"), [
    (["ccworkflow", "demo.json", "--valdate"], "did you mean --validate?"),
    (["ccworkflow", "demo.json", "--itmes", "3"], "did you mean --items?"),
    (["ccstatus", "--jsno"], "did you mean --json?"),
    (["cclog", "--folow"], "did you mean --follow?"),
])
def test_a_mistyped_flag_gets_the_closest_flag_as_a_suggestion(
        tmp_path: Path, argv: list[str], hint: str) -> None:
    shutil.copy(ROOT / "workflows" / "demo.json", tmp_path)
    done = cc(*argv, cwd=tmp_path)
    assert done.returncode == 2
    assert hint in done.stderr.splitlines()[-1]


# ------------------------------------------------------------------ pictures for the README

MODULES = ROOT / "tests" / "data" / "first_contact"
ARTIFACTS = ROOT / "test-artifacts"
SCENES = [f"scene-{i}" for i in range(1, 9)]


def scenes_graph(folder: Path, **args: Any) -> Path:
    """Start → Measure (split over eight scenes, one fails) → Report (merge)."""
    return write_graph(folder, "scenes", [
        START,
        {"name": "Measure", "module": "measure", "downstreamOf": ["Start"], "splitOn": "scene",
         "args": {"scene": SCENES, "bad": "scene-4", **args}},
        {"name": "Report", "module": "noop", "downstreamOf": ["Measure"], "merge": True}])


def test_the_summary_names_the_failed_branch_with_its_log_and_is_drawn_for_the_readme(
        tmp_path: Path) -> None:
    graph = scenes_graph(tmp_path)
    done = subprocess.run([str(BIN / "ccworkflow"), str(graph), "--modules", str(MODULES),
                           "--no-http", "--workers", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=90, env={**_env(), "FORCE_COLOR": "1"})
    assert done.returncode == 1, done.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert "failed: pebble 1, node Measure[3] (error)" in plain
    assert "ValueError: scene-4: band 2 is empty, nothing to measure" in plain
    assert "WARNING scene-4: band 2 has no valid pixels" in plain
    assert "failed: pebble 1, node Report (error)" in plain
    assert "no error of its own: a parent's failure reached it" in plain
    assert "\x1b[1;31m1 failed" in done.stdout  # coloured when the terminal allows
    draw(f"$ ccworkflow scenes.json\n{done.stdout}", "summary")


def test_the_live_view_shows_each_node_and_the_running_jobs_and_is_drawn_for_the_readme(
        tmp_path: Path) -> None:
    from apikit import LoopThread, served
    from rich.console import Console

    from cryoflow.cli.display import live_view
    from cryoflow.cli.tally import RunTally
    from cryoflow.graph import load_graph
    from cryoflow.store.runs import NodeShapes

    hold = tmp_path / "hold"
    graph = load_graph(scenes_graph(tmp_path, hold=str(hold), quick=SCENES[:4]),
                       module_paths=(MODULES,))
    thread = LoopThread()
    context = served(tmp_path / "state", graph)
    server = thread.run(context.__aenter__())
    try:
        tally = RunTally(shapes=NodeShapes.of(graph))
        server.head.listeners.append(tally)
        thread.run(server.offer())
        deadline = time.monotonic() + 20
        while (thread.run(_running_jobs(server)) < 2 or sum(tally.nodes["Measure"].values()) < 4
               if "Measure" in tally.nodes else True) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        console = Console(record=True, width=100, force_terminal=True, color_system="truecolor")
        thread.run(_render(console, live_view, server.head, tally))
        text = console.export_text(clear=False)
        assert "scenes ·" in text and "0 completed, 0 failed, 1 active" in text
        assert re.search(r"Measure .*━.* 3 +1 .*2", text), text
        assert "1/Measure/4#1" in text
        draw("$ ccworkflow scenes.json\n" + console.export_text(styles=True), "live")
    finally:
        hold.touch()
        thread.run(context.__aexit__(None, None, None))
        thread.close()


async def _running_jobs(server: Any) -> int:
    return len(server.head.store.jobs(state="running"))


async def _render(console: Any, view: Any, head: Any, tally: Any) -> None:
    console.print(view(head, tally))


def draw(ansi: str, name: str) -> Path:
    """Terminal output (ANSI colours) as ``test-artifacts/NAME.png``, through rich's SVG
    export and a headless Chromium screenshot."""
    from playwright.sync_api import sync_playwright
    from rich.console import Console
    from rich.text import Text

    console = Console(record=True, width=100, force_terminal=True, color_system="truecolor",
                      file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    console.print(Text.from_ansi(ansi.rstrip("\n")))
    svg = console.export_svg(title="cryoflow")
    console.file.close()
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 900}, device_scale_factor=1)
        page.set_content(f"<html><body style='margin:0;background:#fff'>{svg}</body></html>")
        page.locator("svg").first.screenshot(path=str(path))
        browser.close()
    assert path.stat().st_size > 5_000
    return path


# ------------------------------------------------------------------ without a terminal


class _Head:
    """What the progress line reads of a head: its graph, job counts and active pebbles."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from enginekit import graph, node

        self.graph = graph(node("In", module="cmdline"), node("A", ("In",)))
        self.engine = SimpleNamespace(active=1)
        self.load = {"A": (3, 1)}

    def status_value(self, channel: str, param: str) -> int:
        queued, running = self.load.get(channel, (0, 0))
        return queued if param == "pending" else running


def test_the_progress_line_says_only_what_changed_and_counts_this_run(
        caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from cryoflow.cli.display import show_progress
    from cryoflow.cli.tally import RunTally
    from cryoflow.engine.records import PebbleDone, PebbleOutcome

    head, tally = _Head(), RunTally()

    async def scenario() -> None:
        task = asyncio.ensure_future(show_progress(head, tally, None, period_s=0.02))  # type: ignore[arg-type]
        await asyncio.sleep(0.15)  # idle: one line, not seven
        tally(PebbleDone(7, PebbleOutcome.COMPLETED))
        head.load = {"A": (2, 2)}
        await asyncio.sleep(0.15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level("INFO", logger="cryoflow.progress"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "cryoflow.progress"]
    assert lines == ["0 completed, 0 failed, 1 active | A 1 running/3 queued",
                     "1 completed, 0 failed, 1 active | A 2 running/2 queued"]
