"""Python callables as nodes: references a worker can import, and how they are called.

A node that runs a Python callable carries, as literal arguments:

- ``callable``: ``"package.module:qualname"`` (``"mod:MyFlow.a"`` for a method: the
  class is instantiated with no arguments in the worker), or ``"inline:TOKEN"`` for a
  callable registered in this process with :func:`register_inline` (lambdas, functions
  of ``__main__``; only the inline executor can call those);
- ``path``: the ``sys.path`` folder the callable's module is imported from;
- ``parents``: the node's parents in dependency order, and one ``input:PARENT``
  argument per parent holding that parent's ``result``;
- for function specs, ``args`` and ``kwargs``; for operation tasks, ``env``.

The callable's parameters are filled by name: a parent's name gets that parent's
result, ``inputs`` the list of parent results in dependency order, ``input`` their
concatenation (a list result is spliced in, as ColonyOS passes outputs on), and
``worker`` the job's worker handle (``worker.status``, ``worker.log``; growing the
graph with :func:`cryoflow.colony.dynamic.add_child`).
:func:`call_node` returns the node's output: ``{"result": value}``, plus the
``status``, ``color``, ``shape``, ``label`` and ``value`` keys of a returned dict so the
live view can draw the node with them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryoflow.errors import CryoflowError
from cryoflow.graph.callables import import_path as import_path
from cryoflow.graph.callables import import_ref as import_ref

INLINE_PREFIX = "inline:"
DISPLAY_KEYS = ("status", "color", "shape", "label", "value")
"""Keys of a returned dict that the live view uses to draw the node."""

_inline: dict[str, Callable[..., Any]] = {}
_inline_lock = threading.Lock()
_env_lock = threading.Lock()


class CallableError(CryoflowError):
    """A node's Python callable cannot be found, imported or called."""


# ----------------------------------------------------------------------------- references


def why_not_importable(name: str, function: Callable[..., Any]) -> str:
    """A sentence saying why a worker process cannot import ``function``."""
    qualname = getattr(function, "__qualname__", "") or ""
    if "<lambda>" in qualname:
        what = "is a lambda"
    elif "<locals>" in qualname:
        what = "is defined inside another function"
    elif getattr(function, "__module__", None) == "__main__":
        what = "is defined in the __main__ script"
    else:
        what = "has no importable module and name"
    return (f"function {name!r} {what}, so worker processes cannot import it; define it "
            "at the top level of an importable module, or run with run(inline=True)")


def register_inline(function: Callable[..., Any]) -> str:
    """Keep ``function`` in this process's table; return its ``inline:`` reference."""
    token = f"{INLINE_PREFIX}{uuid.uuid4().hex}"
    with _inline_lock:
        _inline[token] = function
    return token


def forget_inline(refs: Sequence[str]) -> None:
    """Drop callables registered with :func:`register_inline`."""
    with _inline_lock:
        for ref in refs:
            _inline.pop(ref, None)


def resolve(ref: str, path: str | None = None) -> Callable[..., Any]:
    """The callable ``ref`` names (see the module docstring)."""
    if ref.startswith(INLINE_PREFIX):
        with _inline_lock:
            found = _inline.get(ref)
        if found is None:
            raise CallableError(
                f"callable {ref} was registered in another process; functions that "
                "cannot be imported only run with run(inline=True)")
        return found
    module_name, sep, qualname = ref.partition(":")
    if not sep or not module_name or not qualname:
        raise CallableError(
            f"{ref!r} is not a callable reference; write 'package.module:function' "
            "(or 'package.module:Class.method')")
    return _walk(_import(module_name, path, ref), qualname, ref)


def _import(module_name: str, path: str | None, ref: str) -> Any:
    """Import ``module_name``; from ``path`` when a module of that name came from elsewhere."""
    loaded = sys.modules.get(module_name)
    if path and loaded is not None and not _from(loaded, path):
        return _load_copy(module_name, path, ref)
    if path and path not in sys.path:
        sys.path.append(path)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise CallableError(f"cannot import {module_name!r} for {ref!r}: {exc}") from exc


_copies: dict[tuple[str, str], Any] = {}


def _from(module: Any, path: str) -> bool:
    file = getattr(module, "__file__", None)
    return file is None or Path(file).resolve().is_relative_to(Path(path).resolve())


def _load_copy(module_name: str, path: str, ref: str) -> Any:
    """A second module of the same name from another folder, kept apart from sys.modules."""
    key = (module_name, path)
    if key not in _copies:
        base = Path(path, *module_name.split("."))
        file = next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()),
                    None)
        spec = importlib.util.spec_from_file_location(
            f"cryoflow_call_{abs(hash(key)):x}", file) if file else None
        if spec is None or spec.loader is None:
            raise CallableError(f"cannot import {module_name!r} for {ref!r} from {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _copies[key] = module
    return _copies[key]


def _walk(target: Any, qualname: str, ref: str) -> Callable[..., Any]:
    for part in qualname.split("."):
        if isinstance(target, type) and inspect.isfunction(target.__dict__.get(part)):
            target = target()  # a method: call it on a fresh instance
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CallableError(f"{ref!r}: there is no {part!r} in {target!r}") from None
    if not callable(target):
        raise CallableError(f"{ref!r} names {target!r}, which is not callable")
    return target


# ----------------------------------------------------------------------------- calling


def call_node(args: Mapping[str, Any], worker: Any = None) -> dict[str, Any]:
    """Call the node's callable with its arguments; return the node's output."""
    function = resolve(str(args["callable"]), args.get("path"))
    results = {p: args.get(f"input:{p}") for p in args.get("parents") or ()}
    positional = list(args.get("args") or ())
    named = bind(function, results, positional, dict(args.get("kwargs") or {}), worker)
    with environment(args.get("env") or {}):
        value = function(*positional, **named)
    return output_of(value)


def bind(
    function: Callable[..., Any], results: Mapping[str, Any], positional: Sequence[Any],
    kwargs: Mapping[str, Any], worker: Any = None,
) -> dict[str, Any]:
    """Keyword arguments for ``function``: ``kwargs`` plus the parent results it names."""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return dict(kwargs)
    named = dict(kwargs)
    offered = {"worker": worker, "inputs": list(results.values()),
               "input": concatenate(results.values()), **results}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for index, param in enumerate(params):
        taken = index < len(positional) and param.kind is not inspect.Parameter.KEYWORD_ONLY
        if param.kind in kinds and not taken and param.name not in named:
            if param.name in offered:
                named[param.name] = offered[param.name]
    return named


def concatenate(results: Any) -> list[Any]:
    """Parent results joined as ColonyOS passes outputs on: lists spliced, values appended."""
    joined: list[Any] = []
    for result in results:
        if isinstance(result, list):
            joined.extend(result)
        elif result is not None:
            joined.append(result)
    return joined


def output_of(value: Any) -> dict[str, Any]:
    """The node output for a return value: the result plus the keys the view draws with."""
    output: dict[str, Any] = {"result": value}
    if isinstance(value, Mapping):
        output.update({k: value[k] for k in DISPLAY_KEYS if k in value})
    return output


@contextlib.contextmanager
def environment(env: Mapping[str, Any]) -> Iterator[None]:
    """Set ``env`` as environment variables for the call, then restore the old values."""
    if not env:
        yield
        return
    with _env_lock:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update({k: str(v) for k, v in env.items()})
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
