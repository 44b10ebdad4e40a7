"""The shape of the package holds: layers, one composition root, few loose modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from enginekit import graph, node

from cryoflow.colony.queue import ColonyQueue
from cryoflow.daemon.root import daemon_executor
from cryoflow.daemon.settings import RunSettings
from cryoflow.graph.instances import HandlerInstance, base_name, handler_instance
from cryoflow.workers.routing import RoutingExecutor

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cryoflow"


def calls_of(name: str) -> dict[str, int]:
    """``{file: count}`` of the calls ``name(...)`` (``Head`` or ``Store.open``) in the package."""
    found: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(call, ast.Call) and ast.unparse(call.func) == name:
                where = str(path.relative_to(ROOT))
                found[where] = found.get(where, 0) + 1
    return found


def test_only_the_composition_root_builds_a_head_or_opens_a_store() -> None:
    assert set(calls_of("Head")) == {"cryoflow/daemon/root.py"}
    assert set(calls_of("Store.open")) == {"cryoflow/daemon/root.py"}


def test_at_most_seven_modules_stay_loose_at_the_top_of_the_package() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 7, loose


def test_the_import_contracts_hold() -> None:
    tool = Path(sys.executable).parent / "lint-imports"
    command = [str(tool)] if tool.exists() else [shutil.which("lint-imports") or "lint-imports"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_jobs_wait_for_external_executors_only_in_a_graph_that_has_nodes_for_them() -> None:
    plain = graph(node("In", module="cmdline"), node("A", module="noop", parents=("In",)))
    external = graph(node("In", module="cmdline"),
                     node("A", module="noop", parents=("In",),
                          extra={"executortype": "gpu-box"}))
    queue = ColonyQueue()
    settings = RunSettings(executor="inline", workers=1)
    without = daemon_executor(plain, settings, queue)
    with_queue = daemon_executor(external, settings, queue)
    assert isinstance(without, RoutingExecutor) and without.external is None
    assert isinstance(with_queue, RoutingExecutor) and with_queue.external is queue


def test_a_global_handler_instance_name_reads_back_as_the_handler_and_the_failed_node() -> None:
    instance = HandlerInstance("Alert", "Wind")
    assert instance.name == "Alert@Wind"
    assert handler_instance(instance.name) == instance
    assert handler_instance("Wind") is None
    assert base_name(instance.name) == "Alert" and base_name("Wind") == "Wind"
