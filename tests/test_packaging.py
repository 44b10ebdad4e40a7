"""The built wheel is the whole product: installed in a fresh virtual environment (its
dependencies from the package index), it validates and runs the demo graph."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "*.egg-info", "build", "dist", "test-artifacts", ".cryoflow",
    "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "*.pyc")
DATA = ["cryoflow/graph/schema.json", "cryoflow/api/openapi.json",
        "cryoflow/api/static/index.html", "cryoflow/api/static/app.js",
        "cryoflow/api/static/app.css", "cryoflow/api/static/favicon.svg"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of this checkout (nothing is written into it)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(folder / "dist"), str(source)], timeout=300)
    (built,) = (folder / "dist").glob("cryoflow-*.whl")
    return built


def run(argv: list[str], *, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_wheel_carries_every_module_builtin_module_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    builtins = sorted(p.name for p in (ROOT / "cryoflow" / "builtin_modules").glob("*.py"))
    assert {"cmdline.py", "noop.py", "unzip.py", "dirwatcher.py", "netwatcher.py"} <= set(
        builtins)
    missing = [f"cryoflow/builtin_modules/{b}" for b in builtins
               if f"cryoflow/builtin_modules/{b}" not in names]
    missing += [d for d in DATA if d not in names]
    shipped = [p.relative_to(ROOT).as_posix() for p in (ROOT / "cryoflow").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    missing += [s for s in shipped if s not in names]  # every module and data file
    assert missing == []


@pytest.mark.timeout(900)
def test_the_wheel_in_a_fresh_venv_validates_and_runs_the_demo(
        wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
         str(wheel)], timeout=600)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "workflows" / "demo.json", work)
    where = run([str(venv / "bin" / "python"), "-c", "import cryoflow; print(cryoflow.__file__)"],
                cwd=work).stdout
    assert where.startswith(str(venv)), where
    checked = run([str(venv / "bin" / "ccworkflow"), "demo.json", "--validate"], cwd=work)
    assert "demo.json: ok" in checked.stdout
    ran = run([str(venv / "bin" / "ccworkflow"), "demo.json", "--no-http"], cwd=work)
    assert ran.stdout.startswith("demo: 1 pebble finished in")
    assert "1 completed, 0 failed" in ran.stdout
    status = run([str(venv / "bin" / "ccstatus"), "--state", ".cryoflow/demo"], cwd=work)
    assert "1 completed" in status.stdout
