"""Modules are found along the documented search path and read without being run."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from cryoflow.errors import ModuleLoadError
from cryoflow.graph import load_graph
from cryoflow.graph.modules import ModuleFinder, builtin_modules_dir, load_module

DATA = Path(__file__).parent / "data"
MODULES = DATA / "modules"
IMPORTABLE = DATA / "importable"


def write_module(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def simple(description: str, *, marker: Path | None = None) -> str:
    side_effect = f"open({str(marker)!r}, 'a').write('x')\n" if marker else ""
    return (
        f"{side_effect}ccmodule = {{'description': {description!r}, 'inputs': {{}}}}\n"
        "def process_task(worker, task):\n    return 100, None\n"
    )


def test_the_first_folder_on_the_search_path_wins(tmp_path: Path) -> None:
    write_module(tmp_path / "one", "twin", simple("first"))
    write_module(tmp_path / "two", "twin", simple("second"))
    info = ModuleFinder([tmp_path / "one", tmp_path / "two"]).find("twin")
    assert info.ccmodule["description"] == "first"
    assert info.ref == str((tmp_path / "one" / "twin.py").resolve())


def test_the_graph_folder_and_its_modules_subfolder_come_before_module_paths(
    tmp_path: Path,
) -> None:
    write_module(tmp_path / "graphs" / "modules", "work", simple("next to the graph"))
    write_module(tmp_path / "graphs", "source", simple("beside the graph"))
    graph = {
        "workflow": {
            "name": "x",
            "nodes": [
                {"name": "In", "module": "watcher"},
                {"name": "W", "module": "work", "downstreamOf": ["In"]},
            ],
        }
    }
    path = tmp_path / "graphs" / "g.json"
    path.write_text(json.dumps(graph))
    loaded = load_graph(path, module_paths=[MODULES])
    assert loaded.node("W").module_ref == str(
        (tmp_path / "graphs" / "modules" / "work.py").resolve()
    )
    assert loaded.node("In").module_ref == str((MODULES / "watcher.py").resolve())


def test_built_in_modules_are_searched_after_the_given_folders(tmp_path: Path) -> None:
    finder = ModuleFinder([tmp_path])
    assert finder.paths == (tmp_path, builtin_modules_dir())
    package = Path(__file__).resolve().parents[1] / "cryoflow"
    assert builtin_modules_dir() == package / "builtin_modules"


def test_a_dotted_import_name_with_a_ccmodule_is_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(IMPORTABLE))
    info = ModuleFinder([]).find("cfx_pkg.mods")
    assert info.ref == "cfx_pkg.mods"
    assert info.outputs == {"m": "n+1"}
    assert "cfx_pkg.mods" not in sys.modules


def test_an_importable_name_without_a_ccmodule_is_refused_without_running_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(IMPORTABLE))
    with pytest.raises(ModuleLoadError, match="has no ccmodule dict"):
        ModuleFinder([]).find("cfx_pkg.plain")
    assert "cfx_pkg.plain" not in sys.modules


@pytest.mark.parametrize("name", ["os", "json", "antigravity"])
def test_standard_library_names_are_not_modules(name: str) -> None:
    with pytest.raises(ModuleLoadError, match="has no ccmodule dict"):
        ModuleFinder([MODULES]).find(name)


@pytest.mark.parametrize("name", ["../modules/work", "/abs/work", "a/b", "", "work.py", "a..b"])
def test_paths_are_not_module_names(name: str) -> None:
    with pytest.raises(ModuleLoadError, match="is not valid"):
        ModuleFinder([MODULES]).find(name)


def test_a_missing_module_error_names_every_folder_tried(tmp_path: Path) -> None:
    with pytest.raises(ModuleLoadError) as caught:
        ModuleFinder([tmp_path, MODULES]).find("nowhere_to_be_found")
    message = str(caught.value)
    for folder in (tmp_path, MODULES, builtin_modules_dir()):
        assert str(folder) in message
    assert "then looked for an importable module 'nowhere_to_be_found'" in message


def test_a_literal_ccmodule_is_read_without_importing_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    write_module(tmp_path, "quiet", simple("quiet", marker=marker))
    info = ModuleFinder([tmp_path]).find("quiet")
    assert info.ccmodule["description"] == "quiet"
    assert not marker.exists()


def test_a_computed_ccmodule_is_imported_once_per_process(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    write_module(
        tmp_path,
        "computed_once",
        f"""
        open({str(marker)!r}, "a").write("x")
        BASE = {{"a": "A"}}
        ccmodule = {{"description": "computed", "inputs": dict(BASE)}}

        def process_task(worker, task):
            return 100, None
        """,
    )
    for _ in range(3):
        assert ModuleFinder([tmp_path]).find("computed_once").inputs == {"a": "A"}
    assert marker.read_text() == "x"


def test_load_module_imports_a_file_once_and_reuses_it() -> None:
    first = load_module(str(MODULES / "anything.py"))
    assert load_module(str(MODULES / "anything.py")) is first
    assert first.process_task(None, {"args": {"k": 1}}) == (100, {"k": 1})


def test_load_module_imports_a_dotted_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(IMPORTABLE))
    assert load_module("cfx_pkg.mods").process_task(None, {"args": {"n": 1}}) == (100, {"m": 2})


def test_load_module_reports_an_import_failure_as_a_module_error(tmp_path: Path) -> None:
    path = write_module(tmp_path, "explodes", "raise RuntimeError('boom')\n")
    with pytest.raises(ModuleLoadError, match="failed to import: boom"):
        load_module(str(path))


def test_a_package_folder_is_a_module() -> None:
    info = ModuleFinder([MODULES]).find("pkgmod")
    assert info.ref.endswith("pkgmod/__init__.py")
    assert load_module(info.ref).process_task(None, {"args": {"x": 3}}) == (100, {"y": 3})


def test_a_module_with_a_syntax_error_is_reported() -> None:
    with pytest.raises(ModuleLoadError, match=r"broken\.py cannot be read"):
        ModuleFinder([MODULES]).find("broken")


def test_a_module_without_process_task_or_start_is_refused() -> None:
    with pytest.raises(ModuleLoadError, match="defines neither process_task"):
        ModuleFinder([MODULES]).find("noentry")


def test_a_file_without_ccmodule_is_refused() -> None:
    with pytest.raises(ModuleLoadError, match="has no ccmodule dict"):
        ModuleFinder([MODULES]).find("nothing")


def test_input_modules_are_those_with_a_start_function() -> None:
    finder = ModuleFinder([MODULES])
    watcher, source, work = finder.find("watcher"), finder.find("source"), finder.find("work")
    assert (watcher.is_input, watcher.input_type) == (True, "permanent")
    assert (source.is_input, source.input_type) == (True, "singlerun")
    assert (work.is_input, work.input_type) == (False, None)


def test_an_unknown_input_type_is_refused(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "odd",
        "ccmodule = {'input_type': 'sometimes'}\ndef start(handler, args, stop_event):\n    pass\n",
    )
    with pytest.raises(ModuleLoadError, match="input_type 'sometimes' must be"):
        ModuleFinder([tmp_path]).find("odd")


def test_a_finder_answers_each_name_once(tmp_path: Path) -> None:
    finder = ModuleFinder([MODULES])
    assert finder.find("work") is finder.find("work")


def test_an_edited_module_file_is_read_again_by_a_new_finder(tmp_path: Path) -> None:
    path = write_module(tmp_path, "edited", simple("before"))
    assert ModuleFinder([tmp_path]).find("edited").ccmodule["description"] == "before"
    path.write_text(simple("after, and longer"))
    assert ModuleFinder([tmp_path]).find("edited").ccmodule["description"] == "after, and longer"


def test_module_info_exposes_declarations() -> None:
    info = ModuleFinder([MODULES]).find("work")
    assert info.provides == ("Product",) and info.depends == ()
    assert info.defaults["priority"] == 40
    assert "src" in (info.inputs or {})
