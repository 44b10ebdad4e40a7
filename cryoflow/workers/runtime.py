"""The job runtime: how one :class:`Task` becomes one :class:`JobResult`, on any worker.

Every executor calls :func:`run_task` inside the process that runs the job. It loads
the module (once per process), prepares file arguments (:mod:`.args`), changes into
``task.workdir``, calls ``process_task(worker, task[, cancel_event])`` (once, or once
per item with ``loop``), normalizes what came back (docs/modules.md, "What the return
value means"), runs ``post`` copies after a success, and measures the job. It never
raises for a job's failure.

Result check (:mod:`.results`): what a job keeps is None or a dict of JSON values
within ``task.max_result_bytes``; anything else fails the job, naming the module.

Return normalization: ``(100, retval)``, a bare dict and ``None`` are ``success``;
``(p, retval)`` with another progress is ``error`` ("module returned progress 42
(expected 100)"); an exception is ``error`` with ``"<ExcType>: <msg>"`` and the
traceback in ``stats["traceback"]``; a job whose ``cancel_event`` was set ends
``cancel`` however it returned (its exception message, if any, is kept).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cryoflow.compat import install as install_compat
from cryoflow.errors import ModuleLoadError
from cryoflow.graph.model import Outcome
from cryoflow.workers.args import post_outputs, prepare_args, staging_for
from cryoflow.workers.base import JobResult, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.results import ResultProblem, checked_result

BUILTIN_MODULES = Path(__file__).resolve().parents[1] / "builtin_modules"
"""The package's ``builtin_modules/`` folder of built-in modules."""

_Normalized = tuple[Outcome, Any, str | None]


@dataclass(frozen=True)
class _Entry:
    """A loaded module's ``process_task`` and what the runtime needs to know about it."""

    call: Callable[..., Any]
    takes_cancel: bool
    outputs: tuple[str, ...]
    keeps_text: bool = False
    """A ``ccmodule`` without outputs: CryoCloud modules like that returned a text as
    their result (``(100, "")``, or their errors); it is kept as output ``retval``."""

    def kept(self, value: Any) -> Any:
        if self.keeps_text and isinstance(value, tuple) and len(value) == 2 and isinstance(
                value[1], str):
            return value[0], {"retval": value[1]}
        return value


def run_task(task: Task, worker: WorkerHandle, cancel_event: threading.Event) -> JobResult:
    """Run one job to completion in this process and describe how it went.

    ``worker`` is bound to the job while it runs. Never raises for a failing job; a
    ``KeyboardInterrupt`` still propagates.
    """
    meter = _Meter()
    worker.bind(task.id, task.pebble_id, cancel_event)
    traceback_text: str | None = None
    try:
        outcome, retval, error = _run(task, worker, cancel_event)
    except (Exception, SystemExit) as exc:
        outcome, retval, error = Outcome.ERROR, None, _describe(exc)
        traceback_text = traceback_of(exc)
    finally:
        worker.bind(None)
    if cancel_event.is_set():
        outcome = Outcome.CANCEL
    outcome, retval, error = _checked(task, outcome, retval, error)
    stats = meter.stats(worker)
    if traceback_text:
        stats["traceback"] = traceback_text
    return JobResult(outcome=outcome, retval=retval, error=error, stats=stats)


def _run(task: Task, worker: WorkerHandle, cancel_event: threading.Event) -> _Normalized:
    entry = _entry_for(task)
    worker.staging_config = staging_for(task)[0]  # for modules that move files themselves
    args = prepare_args(task)

    def call(item_args: Mapping[str, Any]) -> _Normalized:
        task_dict = {
            "args": item_args,
            "id": task.id,
            "pebble_id": task.pebble_id,
            "node": task.node,
            "module": task.module,
        }
        if entry.takes_cancel:
            return normalize(entry.kept(entry.call(worker, task_dict, cancel_event)))
        return normalize(entry.kept(entry.call(worker, task_dict)))

    with _WorkingDir(task.workdir):
        if task.loop:
            outcome, retval, error = run_loop(call, args, task.loop, cancel_event, entry.outputs)
        else:
            outcome, retval, error = call(args)
    if outcome is Outcome.SUCCESS and task.post and not cancel_event.is_set():
        retval = post_outputs(retval, task.post, task)
    return outcome, retval, error


def normalize(value: Any) -> _Normalized:
    """Map what ``process_task`` returned to ``(outcome, retval, error)``."""
    if value is None or isinstance(value, dict):
        return Outcome.SUCCESS, value, None
    if isinstance(value, tuple) and len(value) == 2:
        progress, retval = value
        if progress == 100:
            return Outcome.SUCCESS, retval, None
        return Outcome.ERROR, retval, f"module returned progress {progress} (expected 100)"
    return (
        Outcome.ERROR,
        None,
        f"module returned {type(value).__name__} (expected (progress, retval) or a dict)",
    )


def run_loop(
    call: Callable[[Mapping[str, Any]], _Normalized],
    args: Mapping[str, Any],
    key: str,
    cancel_event: threading.Event,
    declared: tuple[str, ...] = (),
) -> _Normalized:
    """Call once per item of ``args[key]``, in order; outputs become ordered lists.

    Cancel is checked before each item; the first item that does not succeed ends the
    loop with its outcome. A key one item did not return is ``None`` at its index.
    """
    items = args.get(key)
    if not isinstance(items, list):
        return Outcome.ERROR, None, f"loop argument {key!r} must be a list, not {items!r}"
    results: list[Mapping[str, Any]] = []
    for index, item in enumerate(items):
        if cancel_event.is_set():
            return Outcome.CANCEL, None, f"cancelled before loop item {index}"
        outcome, retval, error = call({**args, key: item})
        if outcome is not Outcome.SUCCESS:
            return outcome, retval, f"loop item {index}: {error}"
        results.append(retval if isinstance(retval, Mapping) else {})
    keys = dict.fromkeys([*declared, *(k for r in results for k in r)])
    return Outcome.SUCCESS, {k: [r.get(k) for r in results] for k in keys}, None


def _checked(task: Task, outcome: Outcome, retval: Any, error: str | None) -> _Normalized:
    """Keep only a result that is a dict of JSON values within the task's cap."""
    try:
        return outcome, checked_result(retval, task.max_result_bytes), error
    except ResultProblem as problem:
        said = f"module {task.module!r} returned {problem}"
        if outcome is Outcome.SUCCESS:
            return Outcome.ERROR, None, said
        return outcome, None, f"{error}; {said}" if error else said


def traceback_of(exc: BaseException) -> str:
    """``exc``'s traceback as Python prints it, or its frames alone if that cannot be made.

    Python 3.11 parses each source line to mark the failing expression, and its AST builder
    can raise a spurious ``SystemError`` when two threads build trees at once (fixed in
    3.12). A job that failed must still say where, so the plain form stands in.
    """
    try:
        return "".join(traceback.format_exception(exc))
    except SystemError:
        frames = [f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
                  + (f"    {frame.line.strip()}\n" if frame.line else "")
                  for frame in traceback.extract_tb(exc.__traceback__)]
        return "".join(["Traceback (most recent call last):\n", *frames,
                        *traceback.format_exception_only(exc)])


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _WorkingDir:
    """Change into ``path`` (created if missing) for the job; restore the cwd after."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.previous: str | None = None

    def __enter__(self) -> None:
        if self.path:
            self.previous = os.getcwd()
            Path(self.path).mkdir(parents=True, exist_ok=True)
            os.chdir(self.path)

    def __exit__(self, *exc_info: object) -> None:
        if self.previous is not None:
            os.chdir(self.previous)


class _Meter:
    """Wall time, CPU time (this process and its children) and peak memory of a job."""

    def __init__(self) -> None:
        self.started = time.time()
        self.t0 = time.perf_counter()
        self.cpu0 = _cpu_seconds(*_usage())

    def stats(self, worker: WorkerHandle) -> dict[str, Any]:
        own, children = _usage()
        return {
            "runtime": time.perf_counter() - self.t0,
            "cpu_time": _cpu_seconds(own, children) - self.cpu0,
            "max_memory": max(own.ru_maxrss, children.ru_maxrss) * 1024,
            "started": self.started,
            "finished": time.time(),
            "worker": worker.name,
            "node": worker.host,
        }


def _usage() -> tuple[resource.struct_rusage, resource.struct_rusage]:
    return resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)


def _cpu_seconds(own: resource.struct_rusage, children: resource.struct_rusage) -> float:
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# Module loading: a small private loader, cached per process.

_entries: dict[tuple[str, str | None, tuple[str, ...]], _Entry] = {}
_modules: dict[str, ModuleType] = {}


def _entry_for(task: Task) -> _Entry:
    key = (task.module, task.module_ref, task.module_paths)
    entry = _entries.get(key)
    if entry is None:
        ref = task.module_ref or find_module(task.module, task.module_paths)
        entry = _entries[key] = _make_entry(task.module, _load_module(ref))
    return entry


def find_module(name: str, paths: tuple[str, ...] = ()) -> str:
    """The file for ``name`` in ``paths`` or the built-in modules, else ``name`` itself."""
    for folder in (*paths, str(BUILTIN_MODULES)):
        candidate = Path(folder) / f"{name}.py"
        if candidate.is_file():
            return str(candidate.resolve())
    return name


def _make_entry(name: str, module: ModuleType) -> _Entry:
    call = getattr(module, "process_task", None)
    if not callable(call):
        where = getattr(module, "__file__", None) or module.__name__
        raise ModuleLoadError(f"module {name!r} ({where}) has no process_task function")
    declared = getattr(module, "ccmodule", None)
    outputs = declared.get("outputs") if isinstance(declared, dict) else None
    keeps_text = isinstance(declared, dict) and not declared.get("outputs")
    return _Entry(call, _takes_cancel(call), tuple(outputs) if isinstance(outputs, dict) else (),
                  keeps_text)


def _takes_cancel(call: Callable[..., Any]) -> bool:
    """True when ``call`` accepts a third positional argument (``cancel_event``)."""
    try:
        params = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    count = sum(1 for p in params if p.kind in positional)
    return count >= 3 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _load_module(ref: str) -> ModuleType:
    """Import a module file path or a dotted name, once per process (with the
    ``CryoCloud``/``CryoCore`` compatibility names importable, see cryoflow.compat)."""
    module = _modules.get(ref)
    if module is None:
        install_compat()
        try:
            module = (
                _import_file(Path(ref)) if ref.endswith(".py") else importlib.import_module(ref)
            )
        except ModuleLoadError:
            raise
        except Exception as exc:
            raise ModuleLoadError(f"cannot import module {ref!r}: {_describe(exc)}") from exc
        _modules[ref] = module
    return module


def _import_file(path: Path) -> ModuleType:
    name = f"cryoflow_module_{path.stem}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModuleLoadError(f"cannot import module file {path}")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)  # CryoCloud modules import their sibling modules
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
