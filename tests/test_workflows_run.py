"""Every example graph in ``workflows/`` runs to completion through ``ccworkflow``.

Each example has a recipe here: how to run it (options, files to drop, orders to post)
and what its report must show. A singlerun example runs to its exit code; a permanent
one (dirwatcher, netwatcher) is fed, waited on through its state folder, stopped with
SIGTERM, and judged by its report. An example without a recipe, or one that cannot
run here, fails with the reason: nothing is skipped.
"""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.ledger import StoreView
from harness.procs import REPO, HeadProcess, Processes, wait_until

WORKFLOWS = REPO / "workflows"
EXAMPLES = sorted(p.name for p in WORKFLOWS.glob("*") if p.suffix in (".json", ".yaml", ".yml"))
STARTUP_S = 20.0


@dataclass
class Example:
    """One example graph run in a test's own folders."""

    path: Path
    folder: Path
    procs: Processes

    @property
    def state(self) -> Path:
        return self.folder / "state"

    @property
    def report_path(self) -> Path:
        return self.folder / "report.json"

    def flags(self, *extra: str) -> list[str]:
        return ["--state", str(self.state), "--report", str(self.report_path),
                "--no-http", "--workers", "2", *extra]

    def run(self, *extra: str, expect: int = 0) -> dict[str, Any]:
        """Run a singlerun example to its end; return its report."""
        code, output = self.procs.run(self.path, *self.flags(*extra), probes=False)
        if code != expect:
            raise AssertionError(f"{self.path.name} exited {code}, not {expect}:\n{output}"
                                 f"{failures(self.report_path)}")
        return self.report(output)

    def start(self, *extra: str) -> HeadProcess:
        return self.procs.ccworkflow(self.path, *self.flags(*extra), probes=False)

    def stop(self, head: HeadProcess, *, expect: int | None = 0) -> dict[str, Any]:
        """SIGTERM a permanent example; check its exit code (unless None), return its report."""
        head.send(signal.SIGTERM)
        code = head.wait(15)
        if expect is not None and code != expect:
            raise AssertionError(f"{self.path.name} exited {code} after SIGTERM, not "
                                 f"{expect}:\n{head.output()}{failures(self.report_path)}")
        return self.report(head.output())

    def report(self, output: str) -> dict[str, Any]:
        assert self.report_path.exists(), f"{self.path.name} wrote no report:\n{output}"
        data: dict[str, Any] = json.loads(self.report_path.read_text())
        return data

    def wait_pebbles_done(self, head: HeadProcess, count: int, timeout_s: float) -> None:
        """Wait until ``count`` pebbles are finished; fail early if the head exits."""
        store = StoreView(self.state)

        def done() -> bool:
            assert head.alive, f"{self.path.name} exited early:\n{head.output()}"
            if not store.db.exists():
                return False
            rows = store.sql("SELECT count(*) FROM pebbles WHERE state = 'done'")
            return bool(rows[0][0] >= count)

        try:
            wait_until(done, timeout_s=timeout_s, what=f"{count} finished pebbles",
                       interval_s=0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}; {self.path.name} said:\n{head.output()}") from None


def failures(report_path: Path) -> str:
    """The nodes that did not succeed, per pebble, from a report (if there is one)."""
    if not report_path.exists():
        return ""
    lines = []
    for pebble in json.loads(report_path.read_text())["pebbles"]:
        for name, state in pebble["nodes"].items():
            if state["outcome"] not in ("success", "skipped"):
                lines.append(f"pebble {pebble['id']} node {name}: {state['outcome']}: "
                             f"{state['error']}")
    return "\nnodes that did not succeed:\n" + "\n".join(lines) if lines else ""


def outcomes(pebble: dict[str, Any]) -> dict[str, str]:
    return {name: node["outcome"] for name, node in pebble["nodes"].items()}


def only_pebble(report: dict[str, Any]) -> dict[str, Any]:
    assert len(report["pebbles"]) == 1, report
    pebble: dict[str, Any] = report["pebbles"][0]
    return pebble


def assert_completed(report: dict[str, Any], pebble: dict[str, Any],
                     **expected: str) -> None:
    """The pebble completed; every node succeeded unless told otherwise."""
    got = outcomes(pebble)
    want = {name: expected.get(name, "success") for name in got}
    assert (pebble["outcome"], got) == ("completed", want), json.dumps(pebble, indent=1)


# Recipes


def demo(example: Example) -> None:
    report = example.run()
    pebble = only_pebble(report)
    assert_completed(report, pebble)
    spread = pebble["nodes"]["Spread"]["output"]
    assert isinstance(spread, list) and len(spread) == 5, spread


def diamond_merge(example: Example) -> None:
    report = example.run()
    pebble = only_pebble(report)
    assert_completed(report, pebble)
    assert len(pebble["nodes"]["Batch"]["output"]) == 3


def options_and_runif(example: Example) -> None:
    report = example.run()
    assert_completed(report, only_pebble(report), Careful="skipped")
    report = example.run("--fresh", "--careful", "--rounds", "1", "--labels", "north,east")
    pebble = only_pebble(report)
    assert_completed(report, pebble, Fast="skipped")
    assert pebble["nodes"]["Visit"]["attempts"] == 1


def dirwatcher_unzip(example: Example) -> None:
    inbox, store, rejected = (example.folder / n for n in ("inbox", "store", "rejected"))
    for folder in (inbox, store, rejected):
        folder.mkdir()
    head = example.start("--inbox", str(inbox), "--store", f"{store}/",
                         "--rejected", str(rejected))
    staging = example.folder / "staging"
    staging.mkdir()
    with zipfile.ZipFile(staging / "good.zip", "w") as archive:
        archive.writestr("scene/band1.txt", "one")
        archive.writestr("notes.txt", "two")
    (staging / "bad.zip").write_bytes(b"this is not a zip archive\n" * 10)
    for name in ("good.zip", "bad.zip"):
        (staging / name).rename(inbox / name)
    example.wait_pebbles_done(head, 2, timeout_s=STARTUP_S + 10)
    report = example.stop(head, expect=None)
    by_file = {Path(p["input"]["fullpath"]).name: p for p in report["pebbles"]}
    assert set(by_file) == {"good.zip", "bad.zip"}, report
    assert head.popen.returncode == (1 if report["outcome"] == "failed" else 0)
    assert_completed(report, by_file["good.zip"], SetAside="skipped", Alarm="skipped")
    assert sorted(p.name for p in store.iterdir()) == ["notes.txt", "scene"]
    assert not (inbox / "good.zip").exists()
    bad = outcomes(by_file["bad.zip"])
    assert (bad["Unpack"], bad["SetAside"], bad["Done"]) == ("error", "success", "skipped")
    assert (rejected / "bad.zip").exists()


QUICKLOOK_PORT = 8098
"""The port of the service the example's ``Quicklook`` node names (``serviceURL``)."""


def netwatcher_service(example: Example) -> None:
    service = start_quicklook_service(example)
    wait_until(lambda: accepting(service, QUICKLOOK_PORT), timeout_s=STARTUP_S,
               what=f"the Quicklook service on port {QUICKLOOK_PORT}")
    port = free_port()
    head = example.start("--port", str(port), "--gpus", "1", "--quicklooks")
    wait_until(lambda: accepting(head, port), timeout_s=STARTUP_S, what=f"port {port}")
    scene = example.folder / "scene.dat"
    scene.write_bytes(b"scene bytes")
    reply = post(port, {"scene": str(scene), "level": 2})
    assert isinstance(reply, dict) and isinstance(reply.get("id"), int), reply
    example.wait_pebbles_done(head, 1, timeout_s=30)
    report = example.stop(head)
    assert_completed(report, only_pebble(report))


def start_quicklook_service(example: Example) -> HeadProcess:
    """A second head whose netwatcher answers on the port ``Quicklook`` posts to."""
    graph = example.folder / "quicklook.json"
    graph.write_text(json.dumps({"workflow": {"name": "quicklook", "nodes": [
        {"name": "Orders", "module": "netwatcher", "args": {"port": QUICKLOOK_PORT}},
        {"name": "Look", "module": "noop", "downstreamOf": ["Orders"], "args": {"time": 0}},
    ]}}))
    flags = ["--state", str(example.folder / "quicklook-state"), "--no-http", "--workers", "1"]
    return example.procs.ccworkflow(graph, *flags, probes=False)


RECIPES: dict[str, Callable[[Example], None]] = {
    "demo.json": demo,
    "diamond_merge.json": diamond_merge,
    "options_and_runif.yaml": options_and_runif,
    "dirwatcher_unzip.json": dirwatcher_unzip,
    "netwatcher_service.json": netwatcher_service,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepting(head: HeadProcess, port: int) -> bool:
    assert head.alive, f"ccworkflow exited before it listened on {port}:\n{head.output()}"
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def post(port: int, order: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/task", data=json.dumps(order).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201, 202), response.status
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"the netwatcher refused the order: {e.code} "
                             f"{e.read().decode(errors='replace')}") from None


# The tests


def test_the_examples_folder_holds_example_graphs() -> None:
    assert EXAMPLES, f"{WORKFLOWS} holds no example graphs"


def test_every_example_has_a_recipe_and_every_recipe_an_example() -> None:
    assert sorted(RECIPES) == EXAMPLES


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_workflow_runs_to_completion(name: str, tmp_path: Path,
                                                 procs: Processes) -> None:
    recipe = RECIPES.get(name)
    if recipe is None:
        pytest.fail(f"workflows/{name} has no recipe in {Path(__file__).name}: add how to "
                    "run it and what its report must show")
    recipe(Example(WORKFLOWS / name, tmp_path, procs))
