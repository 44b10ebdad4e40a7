"""The web view in real headless Chromium (Debian ``chromium``) driven by Playwright.

These tests fail, not skip, when Chromium is missing: CI installs it
(``apt-get install -y chromium``). Screenshots go to ``test-artifacts/`` only, so a test
run leaves the checkout clean; ``scripts/screenshots.py`` copies the README's picture
to ``docs/webview.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from apikit import GATE, READ_TOKEN, ServedInThread, gate
from enginekit import graph, node
from playwright.sync_api import Browser, Page, sync_playwright

from cryoflow.engine.records import (
    NodeChanged,
    NodeState,
    NodeStatus,
    PebbleDone,
    PebbleOutcome,
)
from cryoflow.graph.model import Outcome
from cryoflow.store import Store

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
XSS = "<img src=x onerror=alert(1)>"
GREEN = "rgb(92, 196, 106)"
RED = "rgb(229, 83, 75)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing; install Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


class Watched:
    """A page with every console error, page error and dialog it produced."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("g.node", timeout=10_000)
        self.page.wait_for_selector("#conn.conn-on", timeout=10_000)

    def status(self, name: str) -> str | None:
        return self.page.get_attribute(f'g.node[data-node="{name}"]', "data-status")

    def wait_status(self, name: str, status: str, timeout_s: float = 10.0) -> float:
        """Wait until node ``name`` shows ``status``; return how long it took."""
        started = time.monotonic()
        self.page.wait_for_selector(f'g.node[data-node="{name}"][data-status="{status}"]',
                                    timeout=timeout_s * 1000)
        return time.monotonic() - started

    def fill(self, name: str) -> str:
        selector = f'g.node[data-node="{name}"] .shape'
        return str(self.page.eval_on_selector(selector, "e => getComputedStyle(e).fill"))

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context.new_page())
    yield watched
    context.close()


@pytest.fixture
def head(tmp_path: Path) -> Iterator[ServedInThread]:
    server = ServedInThread(tmp_path / "state")
    yield server
    server.close()


def offer(head: ServedInThread, **item: Any) -> int:
    return head.run(head.served.offer(**item))


def idle(head: ServedInThread) -> None:
    head.run(head.served.idle())


def test_the_page_loads_without_console_errors_and_draws_the_graph(
        page: Watched, head: ServedInThread) -> None:
    offer(head, x=1)
    idle(head)
    page.open(head.url)
    assert page.page.locator("g.node").count() == 3
    assert page.page.locator("path.edge").count() == 2
    assert page.page.text_content("#workflow-name") == "t"
    assert page.status("B") == "finished" and page.fill("B") == GREEN
    page.shot("webview-loaded")
    assert page.errors == []


def test_a_node_turns_green_without_a_reload_when_its_job_finishes(
        page: Watched, head: ServedInThread, tmp_path: Path) -> None:
    page.open(head.url)
    offer(head, x=1, gate=str(tmp_path / "open"))
    page.wait_status("A", "running")
    page.shot("webview-running")
    (tmp_path / "open").touch()
    idle(head)
    took = page.wait_status("B", "finished")
    assert page.fill("A") == GREEN
    assert took < 1.0, f"the view took {took:.2f} s to show the change"
    assert page.errors == []


def test_a_failed_node_turns_red_and_shows_its_error(
        page: Watched, head: ServedInThread) -> None:
    page.open(head.url)
    offer(head, x=5, fail=True)
    page.wait_status("A", "error")
    assert page.fill("A") == RED and page.status("B") == "skipped"
    page.page.click('g.node[data-node="A"]')
    page.page.wait_for_selector("table.jobs td.error:has-text('asked to fail on 5')")
    page.shot("webview-error")
    assert page.errors == []


def test_job_ids_are_listed_in_number_order_not_string_order(
        page: Watched, head: ServedInThread) -> None:
    for i in range(12):
        offer(head, x=i)
    idle(head)
    page.open(head.url)
    page.page.click('g.node[data-node="A"]')
    page.page.wait_for_selector('table.jobs tr[data-job="12/A#1"]')
    ids = page.page.eval_on_selector_all(
        "table.jobs:last-of-type tr[data-job]", "rows => rows.map(r => r.dataset.job)")
    assert ids == [f"{i}/A#1" for i in range(1, 13)]
    assert page.errors == []


def test_a_red_node_whose_error_was_handled_is_counted_in_the_header(
        page: Watched, tmp_path: Path) -> None:
    server = ServedInThread(tmp_path / "state", showcase())
    try:
        offer(server, x="scene-1.zip", fail=True)
        idle(server)
        page.open(server.url)
        page.wait_status("Unpack", "error")
        assert page.fill("Unpack") == RED
        header = page.page.text_content("#summary") or ""
        assert "1 completed · 0 failed · 1 node error (handled)" in header
        assert page.errors == []
    finally:
        page.page.close()
        server.close()


def test_the_item_column_shows_a_readable_summary_of_each_pebble(
        page: Watched, head: ServedInThread) -> None:
    offer(head, relpath="in/scene-7.zip", fullpath="/data/in/scene-7.zip", datasize=1234567)
    offer(head, x="s1.zip", count=3, tags=["a", "b"], more={"deep": 1})
    offer(head, **{f"field{i}": "v" * 20 for i in range(12)})
    idle(head)
    page.open(head.url)
    cells = page.page.eval_on_selector_all(
        "#pebbles tr td:nth-child(4)", "cells => cells.map(c => c.textContent)")
    assert cells[0] == "scene-7.zip · 1.2 MB"
    assert cells[1] == "x=s1.zip, count=3, tags=[2 items], more={…}"
    assert cells[2].startswith("field0=" + "v" * 20 + ", ") and cells[2].endswith(" more")
    assert len(cells[2]) <= 80 and not any(c.startswith("{") for c in cells)
    assert page.errors == []


def test_a_pebble_drill_down_shows_its_graph_outputs_and_log(
        page: Watched, head: ServedInThread) -> None:
    offer(head, x="first")
    offer(head, x="second", fail=True)
    idle(head)
    page.open(head.url)
    page.page.click('tr[data-pebble="2"]')
    page.page.wait_for_selector("#graph-scope:has-text('pebble 2')")
    assert page.status("A") == "error" and page.status("B") == "skipped"
    detail = page.page.text_content("#detail") or ""
    assert "second" in detail and "gate passed for second" in detail
    assert "asked to fail on second" in detail
    page.shot("webview-pebble")
    page.page.click("#graph-all")
    page.page.wait_for_selector('g.node[data-node="B"][data-status="finished"]')
    assert page.errors == []


def test_markup_in_values_is_shown_as_text_and_runs_nothing(
        page: Watched, head: ServedInThread) -> None:
    offer(head, x=XSS, label=XSS)
    idle(head)
    page.open(head.url)
    page.page.click('tr[data-pebble="1"]')
    page.page.wait_for_selector("#graph-scope:has-text('pebble 1')")
    assert XSS in (page.page.text_content("#detail") or "")
    assert XSS in (page.page.text_content("#pebbles") or "")
    page.page.click("#graph-all")
    label = page.page.text_content('g.node[data-node="B"] text.name') or ""
    assert label.startswith("<img src=x")
    assert page.page.evaluate("document.querySelectorAll('img').length") == 0
    page.page.wait_for_timeout(300)
    assert page.dialogs == [] and page.errors == []


def test_a_guarded_head_asks_for_a_token_and_then_goes_live(
        page: Watched, tmp_path: Path) -> None:
    server = ServedInThread(tmp_path / "state", token=READ_TOKEN)
    try:
        offer(server, x=1)
        idle(server)
        page.page.goto(server.url)
        page.page.wait_for_selector("#login:not([hidden])")
        page.page.fill("#token", READ_TOKEN)
        page.page.click("#login-form button")
        page.page.wait_for_selector('g.node[data-node="B"][data-status="finished"]')
        page.page.wait_for_selector("#conn.conn-on")
        page.page.click("#pause")
        page.page.wait_for_selector("#message:has-text('this action needs the admin token')")
        assert [e for e in page.errors if "401" not in e and "403" not in e] == []
    finally:
        page.page.close()
        server.close()


def prefill(state: Path, count: int) -> None:
    """Store ``count`` finished pebbles of :func:`chain` (every tenth failed at A)."""
    now = time.time()
    with Store.open(state, workflow="t") as store, store.batch() as tx:
        actions: list[Any] = []
        for i in range(count):
            pebble_id, _ = tx.add_pebble("In", {"x": i}, now=now)
            failed = i % 10 == 9
            a_state = NodeState(NodeStatus.DONE, Outcome.ERROR if failed else Outcome.SUCCESS,
                                error="boom" if failed else None)
            actions += [NodeChanged(pebble_id, "In", (), NodeState(NodeStatus.DONE,
                                                                  Outcome.SUCCESS, {"x": i})),
                        NodeChanged(pebble_id, "A", (), a_state),
                        PebbleDone(pebble_id, PebbleOutcome.FAILED if failed
                                   else PebbleOutcome.COMPLETED)]
        tx.apply(actions, now=now)


def test_the_page_stays_small_and_quick_with_ten_thousand_pebbles(
        page: Watched, tmp_path: Path) -> None:
    prefill(tmp_path / "state", 10_000)
    server = ServedInThread(tmp_path / "state")
    try:
        started = time.monotonic()
        page.open(server.url)
        took = time.monotonic() - started
        assert page.page.locator("#pebbles tr").count() == 50
        assert "✓9000 ✗1000" in (page.page.text_content('g.node[data-node="A"] .counts') or "")
        page.page.click("#page-latest")
        page.page.wait_for_selector('tr[data-pebble="10000"]')
        page.page.click('tr[data-pebble="9999"]')
        page.page.wait_for_selector("#graph-scope:has-text('pebble 9999')")
        assert page.page.evaluate("document.getElementsByTagName('*').length") < 2000
        assert took < 5.0, f"the page took {took:.1f} s to load"
        assert page.errors == []
    finally:
        page.page.close()
        server.close()


def showcase() -> Any:
    """A graph with a fan-out, a failure handler and a styled node, for the README."""
    return replace(graph(
        node("Files", module="cmdline"),
        gate("Unpack", ("Files",), source="Files"),
        gate("Thumbnail", ("Unpack",), source="Files", fail=False, gate=None),
        gate("Measure", ("Unpack",), source="Files", fail=False,
             gate={"output": "Files.hold", "default": None}),
        node("Report", ("Thumbnail", "Measure"), module="gate", module_ref=GATE,
             run_on="success", args={"color": "#2b7bb9", "shape": "ellipse",
                                     "label": "Report", "value": 42}),
        node("Alert", ("Unpack",), module="gate", module_ref=GATE, run_on="error",
             args={"x": {"output": "Files.x", "default": None}}),
    ), name="scenes")


def test_a_screenshot_of_a_busy_run_is_saved_for_the_readme(
        page: Watched, tmp_path: Path) -> None:
    server = ServedInThread(tmp_path / "state", showcase())
    try:
        for i in range(6):
            offer(server, x=f"scene-{i}.zip", fail=i == 3)
        idle(server)
        offer(server, x="scene-6.zip", hold=str(tmp_path / "hold"))
        page.open(server.url)
        page.wait_status("Measure", "running")
        page.page.click('tr[data-pebble="4"]')
        page.page.wait_for_selector("#graph-scope:has-text('pebble 4')")
        page.page.click("#graph-all")
        page.page.click('g.node[data-node="Measure"]')
        page.page.wait_for_selector("#detail .bar")
        page.page.wait_for_timeout(400)
        shot = page.shot("webview-readme")
        assert shot.stat().st_size > 10_000
        assert page.errors == []
        (tmp_path / "hold").touch()
        idle(server)
    finally:
        page.page.close()
        server.close()



def test_the_view_never_parses_markup_and_has_no_inline_code() -> None:
    static = ROOT / "cryoflow" / "api" / "static"
    script = (static / "app.js").read_text().replace('"http://www.w3.org/2000/svg"', "SVG")
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                   "new Function", "setAttribute(\"style\"", "http://", "https://"):
        assert banned not in script, banned
    page = (static / "index.html").read_text()
    assert "<script>" not in page and " style=" not in page and " on" + "click=" not in page
    assert "http" not in page.replace('lang="en"', "")
