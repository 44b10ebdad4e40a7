"""Strict JSON for posted bodies, and JSON Schema checks with the failing path.

Contract:

- :func:`parse_json` accepts UTF-8 JSON text only. It refuses, with a
  :class:`BodyError` whose text says what is wrong: text that is not UTF-8, malformed
  JSON (the parser's message, with line and column), ``NaN`` and ``Infinity``,
  numbers too large for a float (``1e400``), integers of more digits than Python
  converts, duplicate keys in one object, and nesting deeper than :data:`MAX_DEPTH`.
  It never lets a ``RecursionError`` out.
- :func:`load_schema` reads a schema given as an object or as a path to a JSON file
  and checks that it is a valid JSON Schema; :class:`SchemaCheck` tells why a value
  does not match, naming the JSON path of the failing part.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a post may have."""
_MESSAGE_LIMIT = 300


class BodyError(ValueError):
    """A body that is refused; ``str()`` is the sentence to send back."""


def parse_json(raw: bytes) -> Any:
    """The value of a strict JSON text (see the module contract)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 text: {exc}") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant,
                           parse_float=_float)
    except json.JSONDecodeError as exc:
        raise BodyError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BodyError(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # from the hooks, or an integer of too many digits
        raise BodyError(f"the JSON holds a value that is refused: {_short(str(exc))}") from None
    if _depth(value) > MAX_DEPTH:
        raise BodyError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    return value


def kind_of(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def load_schema(value: Any) -> dict[str, Any]:
    """A checked JSON Schema from an object or a JSON file's path; ValueError if bad."""
    if isinstance(value, str | Path):
        try:
            value = parse_json(Path(value).read_bytes())
        except OSError as exc:
            raise ValueError(f"the schema file cannot be read: {exc}") from None
        except BodyError as exc:
            raise ValueError(f"the schema file {value} is not JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"a schema must be a JSON object or a file path, not {kind_of(value)}")
    schema = dict(value)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"the schema is not a valid JSON Schema: {_short(exc.message)}") from None
    return schema


class SchemaCheck:
    """Validates values against one schema (its validator is built once)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = dict(schema)
        self._validator = jsonschema.validators.validator_for(self.schema)(self.schema)

    def problem(self, value: Any) -> str | None:
        """None when ``value`` matches; else ``"at $.path: reason"``."""
        try:
            error = best_match(self._validator.iter_errors(value))
        except RecursionError:
            return "at $: the value is nested too deeply to check"
        if error is None:
            return None
        return f"at {error.json_path}: {_short(error.message)}"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {_short(repr(key))} in one object")
            seen.add(key)
    return result


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"the number {_short(text)} is too large")
    return number


def _depth(value: Any) -> int:
    """Nesting depth of arrays and objects, found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((child, depth + 1) for child in children)
    return deepest


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."
