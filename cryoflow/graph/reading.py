"""Read graph files (JSON or YAML) and turn parsed data into plain, bounded JSON data.

Syntax errors name the line and column. :func:`plain_data` copies any parsed structure
into dicts, lists and JSON scalars, refusing other values, deep nesting and the
exponential blow-up of YAML aliases.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cryoflow.errors import GraphValidationError
from cryoflow.graph.schema import render_path

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_VALUES = 1_000_000
"""Values a graph may hold (counted with repeats, so YAML alias bombs stop early)."""
MAX_DEPTH = 64
"""How deeply objects and lists may nest in a graph."""


def read_graph_file(path: Path) -> Any:
    """Parse a JSON or YAML graph file; raise a :class:`GraphValidationError` naming the
    line and column of a syntax error."""
    text = _strip_script_wrapper(_read_text(path))
    as_yaml = path.suffix.lower() in (".yaml", ".yml") or text.lstrip()[:1] not in ("{", "[")
    try:
        return _parse_yaml(text) if as_yaml else json.loads(text)
    except json.JSONDecodeError as e:
        raise _invalid(path, "JSON", e.lineno, e.colno, e.msg) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise _invalid(path, "YAML", line, col, str(e.problem or e.context)) from None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise GraphValidationError([f"{path}: the file cannot be parsed: {e}"]) from None


_SCRIPT_WRAPPER = re.compile(r"\A\s*(?:var|let|const)\s+[A-Za-z_$][\w$]*\s*=\s*(?=[{\[])")


def _strip_script_wrapper(text: str) -> str:
    """A graph saved for a web page (``var wf = {...};``, as CryoCloud's web view kept
    them) is read as the JSON it assigns; the offsets of errors stay those of the file."""
    match = _SCRIPT_WRAPPER.match(text)
    if match is None:
        return text
    body = text[match.end():].rstrip()
    if body.endswith(";"):
        body = body[:-1]
    return " " * match.end() + body


def _parse_yaml(text: str) -> Any:
    return yaml.safe_load(text)


def _invalid(path: Path, kind: str, line: int, col: int, why: str) -> GraphValidationError:
    return GraphValidationError([f"{path}: invalid {kind} at line {line}, column {col}: {why}"])


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise GraphValidationError([f"{path}: the file is larger than {MAX_FILE_BYTES} bytes"])
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GraphValidationError([f"{path}: no such graph file"]) from None
    except IsADirectoryError:
        raise GraphValidationError([f"{path}: is a folder, not a graph file"]) from None
    except UnicodeDecodeError as e:
        raise GraphValidationError([f"{path}: the file is not UTF-8 text ({e.reason})"]) from None
    except OSError as e:
        raise GraphValidationError(
            [f"{path}: the file cannot be read: {e.strerror or e}"]
        ) from None


def plain_data(data: Any, source: str) -> Any:
    """A copy of ``data`` made of dicts, lists and JSON scalars (dates become ISO text).

    Raises :class:`GraphValidationError` for other values, for nesting deeper than
    :data:`MAX_DEPTH` and for more than :data:`MAX_VALUES` values.
    """
    return _Plain(source).copy(data, None, 0)


_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Plain:
    """One walk over parsed data; ``path`` is a linked list, unwound only for errors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.left = MAX_VALUES

    def copy(self, value: Any, path: Any, depth: int) -> Any:
        self.left -= 1
        if self.left < 0:
            raise self._fail(path, f"the graph holds more than {MAX_VALUES} values")
        if type(value) in _SCALARS:
            return value
        if depth >= MAX_DEPTH:
            raise self._fail(path, f"values nest deeper than {MAX_DEPTH} levels")
        scalars, copy, deeper = _SCALARS, self.copy, depth + 1
        if isinstance(value, Mapping):
            self.left -= len(value)
            return {
                _key(k): v if type(v) in scalars else copy(v, (path, str(k)), deeper)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            self.left -= len(value)
            return [
                v if type(v) in scalars else copy(v, (path, i), deeper) for i, v in enumerate(value)
            ]
        if isinstance(value, datetime.date | datetime.time):
            return value.isoformat()
        if isinstance(value, str | int | float):  # subclasses such as IntEnum
            return value
        raise self._fail(path, f"a {type(value).__name__} is not JSON data")

    def _fail(self, path: Any, text: str) -> GraphValidationError:
        parts: list[str | int] = []
        while path is not None:
            path, key = path
            parts.append(key)
        where = render_path(tuple(reversed(parts)))
        return GraphValidationError([f"{self.source}: {where}: {text}"])


def _key(key: Any) -> Any:
    if type(key) is str:
        return key
    return key.isoformat() if isinstance(key, datetime.date | datetime.time) else key
