"""Every code block of README.md and docs/*.md is run or checked, so the docs cannot drift.

What happens to a block depends on its language and on an HTML comment on the line
before it:

- ``<!-- not-run: REASON -->``: left alone, and counted (the reason must be given);
- ``<!-- file: NAME -->``: written to ``NAME`` in the document's scratch folder, for
  the bash blocks after it (and checked like any block of its language);
- ``bash``: run with ``bash -euo pipefail`` in the document's scratch folder (a copy of
  ``workflows/`` is there), with the console scripts of this environment on ``PATH``;
  the blocks of one document run in order in the same folder;
- ``json``/``yaml``: a graph (``{"workflow": ...}``, a function-spec list, a flow file)
  is loaded and validated with :func:`load_graph`; a node is validated inside a small
  graph; a ``staging`` config tree is read by :class:`StagingConfig`; any other
  fragment (``"key": value`` lines, API answers) must parse;
- ``python``: run in a fresh interpreter in the scratch folder;
- a block with no language must be marked ``not-run`` (or be given a language).

``docs/python.md`` is one running session (later blocks use earlier names); it is run
block by block by ``tests/test_python_api.py``, which this module checks exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryoflow.graph import load_graph
from cryoflow.staging.config import StagingConfig

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARK = re.compile(r"<!--\s*(not-run|file):\s*(.*?)\s*-->\s*$")
RUN_ELSEWHERE = {"docs/python.md": ("tests/test_python_api.py",
                                    "test_every_code_block_of_the_python_docs_runs")}
TIMEOUT_S = 120
pytestmark = pytest.mark.timeout(900)  # a document's blocks run one after the other


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    code: str
    mark: str | None = None
    """``not-run`` or ``file``."""
    value: str = ""

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line} ({self.language or 'no language'})"


def documents() -> list[str]:
    return ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def blocks_of(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        found.append(Block(doc, text.count("\n", 0, match.start()) + 1, match.group(1),
                           match.group(2), *(mark.groups() if mark else ())))
    return found


def test_every_block_is_run_checked_or_marked_with_a_reason() -> None:
    counts: dict[str, int] = {"run": 0, "checked": 0, "not-run": 0, "elsewhere": 0}
    for doc in documents():
        for block in blocks_of(doc):
            if doc in RUN_ELSEWHERE:
                counts["elsewhere"] += 1
            elif block.mark == "not-run":
                assert block.value, f"{block.where}: say why it is not run"
                counts["not-run"] += 1
            else:
                assert block.language in ("bash", "json", "yaml", "python"), (
                    f"{block.where}: give the block a language (bash, json, yaml, python) "
                    "or mark it <!-- not-run: REASON -->")
                counts["run" if block.language in ("bash", "python") else "checked"] += 1
    print(f"doc blocks: {counts}")
    assert counts["run"] >= 3 and counts["checked"] >= 5
    assert counts["not-run"] < counts["run"] + counts["checked"]


def test_a_document_run_elsewhere_is_run_by_that_test() -> None:
    for doc, (test_file, test_name) in RUN_ELSEWHERE.items():
        source = (ROOT / test_file).read_text()
        assert f"def {test_name}(" in source and Path(doc).name in source, doc


def _runnable_docs() -> list[str]:
    return [d for d in documents() if d not in RUN_ELSEWHERE]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    yield tmp_path


@pytest.mark.parametrize("doc", _runnable_docs())
def test_the_blocks_of_a_document_run_as_printed(doc: str, scratch: Path) -> None:
    blocks = blocks_of(doc)
    for block in blocks:  # the files a document names exist before its first command
        if block.mark == "file":
            (scratch / block.value).parent.mkdir(parents=True, exist_ok=True)
            (scratch / block.value).write_text(block.code)
    for block in blocks:
        if block.mark != "not-run":
            check_block(block, scratch)


def check_block(block: Block, folder: Path) -> None:
    if block.language == "bash":
        run_bash(block, folder)
    elif block.language == "python":
        run_python(block, folder)
    elif block.language in ("json", "yaml"):
        check_data(block, folder)


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOFLOW_")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "120",
            "PYTHONPATH": str(folder)}


def run_bash(block: Block, folder: Path) -> None:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=folder,
                          env=_env(folder), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (
        f"{block.where} failed with exit {done.returncode}:\n{done.stdout}\n{done.stderr}")
    assert "Traceback" not in done.stdout + done.stderr, f"{block.where}:\n{done.stderr}"


def run_python(block: Block, folder: Path) -> None:
    done = subprocess.run([sys.executable, "-c", block.code], cwd=folder, env=_env(folder),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"


def check_data(block: Block, folder: Path) -> None:
    value = parse(block)
    if _is_graph(value):
        path = folder / f"doc-block-{block.line}.{'yaml' if block.language == 'yaml' else 'json'}"
        path.write_text(block.code)
        load_graph(path)  # raises with every problem
    elif isinstance(value, dict) and "module" in value and "name" in value:
        graph = {"workflow": {"name": "doc", "nodes": [value, *_neighbours(value)]}}
        path = folder / f"doc-block-{block.line}.json"
        path.write_text(json.dumps(graph))
        load_graph(path, lenient=True)
    elif isinstance(value, dict) and "staging" in value:
        StagingConfig.from_config(value)


def _neighbours(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Stand-in nodes for the parents and restriction channels a lone node names."""
    parents = [p for p in node.get("downstreamOf", []) if p != "entry"]
    channels = {key.split(":", 1)[0] for key in node.get("restrictions", {})}
    stubs = [{"name": "Start", "module": "cmdline"}] if parents else []
    stubs += [{"name": p, "module": "noop", "downstreamOf": ["Start"]} for p in parents]
    stubs += [{"name": c, "module": "noop", "downstreamOf": [node["name"]]}
              for c in sorted(channels - set(parents) - {node["name"]})]
    return stubs


def parse(block: Block) -> Any:
    """The block's value; a ``"key": value`` fragment is read inside braces."""
    if block.language == "yaml":
        return yaml.safe_load(block.code)
    try:
        return json.loads(block.code)
    except json.JSONDecodeError:
        try:
            return json.loads("{" + block.code + "}")
        except json.JSONDecodeError as e:
            raise AssertionError(f"{block.where} is not JSON (nor a JSON fragment): {e}") from e


def _is_graph(value: Any) -> bool:
    if isinstance(value, dict):
        return "workflow" in value or ("flow" in value and "tasks" in value)
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and "funcname" in v for v in value)
