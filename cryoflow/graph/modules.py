"""Find processing modules by name and read their ``ccmodule`` declarations.

A module is a Python file (``name.py`` or a package ``name/__init__.py``) or an
importable dotted name that defines a ``ccmodule`` dict and ``process_task`` (or
``start`` for an input module). The declaration is read from the source with
:mod:`ast` whenever ``ccmodule`` is a literal, so looking a module up never runs its
imports; only a module whose ``ccmodule`` is computed is imported (once per process).

Search order (docs/graph-format.md, "Modules"): the folders given to :class:`ModuleFinder` in
order (the loader passes the graph file's folder, its ``modules/`` subfolder, the
``--modules`` paths and ``CRYOFLOW_MODULES``), then the package's built-in modules
(``cryoflow/builtin_modules/``), then a dotted import name.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cryoflow
from cryoflow.errors import ModuleLoadError
from cryoflow.graph.model import frozen_map

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
INPUT_TYPES = ("permanent", "singlerun")


def builtin_modules_dir() -> Path:
    """The package's ``builtin_modules/`` folder, home of the built-in modules."""
    return Path(cryoflow.__file__).resolve().parent / "builtin_modules"


@dataclass(frozen=True)
class ModuleInfo:
    """What a graph needs to know about a module, read without running it."""

    name: str
    """The name the graph used."""
    ref: str
    """Where it was found: an absolute file path or a dotted import name."""
    ccmodule: Mapping[str, Any]
    is_input: bool
    input_type: str | None

    @property
    def inputs(self) -> Mapping[str, Any] | None:
        """The declared input args, or None when the module declares none."""
        return _mapping_or_none(self.ccmodule.get("inputs"))

    @property
    def outputs(self) -> Mapping[str, Any] | None:
        """The declared output keys, or None when the module declares none."""
        return _mapping_or_none(self.ccmodule.get("outputs"))

    @property
    def defaults(self) -> Mapping[str, Any]:
        """Processing defaults (``priority``, ``runOn``, ...) for nodes using it."""
        return _mapping_or_none(self.ccmodule.get("defaults")) or {}

    @property
    def work_folder_args(self) -> tuple[str, ...]:
        """``ccmodule["workfolder"]``: args naming where the module writes (or that it
        keeps what it writes). When a node sets none of them, the first becomes the
        pebble's own tempdir (see :func:`cryoflow.graph.nodes.with_work_folder`)."""
        return _strings(self.ccmodule.get("workfolder"))

    @property
    def provides(self) -> tuple[str, ...]:
        return _strings(self.ccmodule.get("provides"))

    @property
    def depends(self) -> tuple[str, ...]:
        return _strings(self.ccmodule.get("depends"))


@dataclass(frozen=True)
class _Declaration:
    """The parts of a module's source that matter, as read by :func:`_read_source`."""

    ccmodule: Mapping[str, Any] | None
    has_ccmodule: bool
    functions: frozenset[str]


class ModuleFinder:
    """Look module names up along a search path; each name is resolved once."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths: tuple[Path, ...] = (*(Path(p) for p in paths), builtin_modules_dir())
        self._found: dict[str, ModuleInfo | ModuleLoadError] = {}

    def find(self, name: str) -> ModuleInfo:
        """Return the module called ``name``; raise :class:`ModuleLoadError` if none."""
        if name not in self._found:
            try:
                self._found[name] = self._lookup(name)
            except ModuleLoadError as e:
                self._found[name] = e
        found = self._found[name]
        if isinstance(found, ModuleLoadError):
            raise found
        return found

    def _lookup(self, name: str) -> ModuleInfo:
        if not _NAME.fullmatch(name) or name.endswith(".py"):
            raise ModuleLoadError(
                f"module name {name!r} is not valid: use a module file's name without "
                "'.py' (letters, digits and '_') or a dotted import name, and add its "
                "folder with --modules"
            )
        if "." not in name:
            for folder in self.paths:
                path = _file_in(folder, name)
                if path is not None:
                    return _info_from_file(name, path)
        return self._import_name(name)

    def _import_name(self, name: str) -> ModuleInfo:
        origin = _locate(name)
        if origin is None:
            tried = ", ".join(str(p) for p in self.paths)
            where = "" if "." in name else f"looked for {name}.py in {tried}, then "
            raise ModuleLoadError(
                f"module {name!r} was not found: {where}looked for an importable module "
                f"{name!r} with Python source on sys.path; add its folder with --modules"
            )
        decl = _read_source(origin)
        if not decl.has_ccmodule:
            raise ModuleLoadError(
                f"module {name!r} ({origin}) has no ccmodule dict, so it is not a cryoflow module"
            )
        return _info(name, name, decl if decl.ccmodule is not None else None)


def _locate(name: str) -> str | None:
    """The source file of an importable dotted name, found without importing anything.

    Parent packages are located, not imported, so looking up a name never runs code.
    Only Python source files count.
    """
    search: list[str] | None = None
    origin: str | None = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
        origin = spec.origin if spec.has_location else None
        if depth < len(parts) and not search:
            return None
    return origin if origin and origin.endswith(".py") else None


def _file_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _info_from_file(name: str, path: Path) -> ModuleInfo:
    decl = _read_source(str(path))
    if not decl.has_ccmodule:
        raise ModuleLoadError(f"module {name!r} ({path}) has no ccmodule dict")
    return _info(name, str(path), decl if decl.ccmodule is not None else None)


def _info(name: str, ref: str, decl: _Declaration | None) -> ModuleInfo:
    """Build the info from a literal declaration, or by importing ``ref``."""
    if decl is None:
        module = load_module(ref)
        ccmodule = getattr(module, "ccmodule", None)
        functions = frozenset(
            f for f in ("process_task", "start") if callable(getattr(module, f, None))
        )
    else:
        ccmodule, functions = decl.ccmodule, decl.functions
    if ccmodule is None:
        raise ModuleLoadError(
            f"module {name!r} ({ref}) has no ccmodule dict, so it is not a cryoflow module"
        )
    if not isinstance(ccmodule, Mapping):
        raise ModuleLoadError(f"module {name!r} ({ref}): ccmodule must be a dict")
    if not functions:
        raise ModuleLoadError(
            f"module {name!r} ({ref}) defines neither process_task(worker, task) nor, "
            "for an input module, start(handler, args, stop_event)"
        )
    input_type = ccmodule.get("input_type")
    is_input = "start" in functions or bool(input_type)
    if is_input and input_type is None:
        input_type = "permanent"
    if input_type is not None and input_type not in INPUT_TYPES:
        raise ModuleLoadError(
            f"module {name!r} ({ref}): input_type {input_type!r} must be 'permanent' or 'singlerun'"
        )
    return ModuleInfo(name, ref, frozen_map(ccmodule), is_input, input_type)


@lru_cache(maxsize=1024)
def _read_source_cached(path: str, mtime_ns: int, size: int) -> _Declaration:
    try:
        text = Path(path).read_text(encoding="utf-8")
        tree = ast.parse(text, filename=path)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as e:
        raise ModuleLoadError(f"module file {path} cannot be read: {e}") from e
    functions = frozenset(
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        and n.name in ("process_task", "start")
    )
    value = _ccmodule_value(tree)
    if value is None:
        return _Declaration(None, False, functions)
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _Declaration(None, True, functions)
    return _Declaration(literal, True, functions)


def _read_source(path: str) -> _Declaration:
    try:
        st = Path(path).stat()
    except OSError as e:
        raise ModuleLoadError(f"module file {path} cannot be read: {e}") from e
    return _read_source_cached(path, st.st_mtime_ns, st.st_size)


def _ccmodule_value(tree: ast.Module) -> ast.expr | None:
    """The expression last assigned to ``ccmodule`` at the top level, if any."""
    value: ast.expr | None = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == "ccmodule" for t in stmt.targets):
                value = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            if isinstance(stmt.target, ast.Name) and stmt.target.id == "ccmodule":
                value = stmt.value
    return value


def load_module(ref: str) -> types.ModuleType:
    """Import a module file (absolute path) or dotted name once per process.

    A file is registered in :data:`sys.modules` under a name derived from its path,
    so a second call (or a worker's next job) reuses the imported module. The
    ``CryoCloud``/``CryoCore`` compatibility names are importable from then on.
    """
    from cryoflow.compat import install

    install()
    if not ref.endswith(".py"):
        try:
            return importlib.import_module(ref)
        except Exception as e:  # a module's own import may raise anything
            raise ModuleLoadError(f"module {ref!r} cannot be imported: {e}") from e
    path = Path(ref).resolve()
    key = f"cryoflow_module_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    if key in sys.modules:
        return sys.modules[key]
    return _import_file(key, path)


def _import_file(key: str, path: Path) -> types.ModuleType:
    search = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(key, path, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise ModuleLoadError(f"module file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a module's own import may raise anything
        del sys.modules[key]
        raise ModuleLoadError(f"module file {path} failed to import: {e}") from e
    return module


def _mapping_or_none(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()
