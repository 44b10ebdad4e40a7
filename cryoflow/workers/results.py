"""The check every module result passes before it leaves the worker (pure).

A result is None or a dict of outputs whose values are JSON: strings, finite numbers,
booleans, None, lists and dicts with string keys. Tuples become lists and paths
(``os.PathLike``) become strings; anything else (NaN, Infinity, sets, bytes, arbitrary
objects) is refused, naming where it sits (``result['a'][2]``). The result must also
encode to at most ``limit`` bytes of JSON; the size is counted while walking, so a
result far over the cap is refused without encoding it whole.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from cryoflow.errors import ConfigError

MAX_DEPTH = 200
_encode_str = json.encoder.encode_basestring_ascii


class ResultProblem(ValueError):
    """Why a result cannot be kept: a sentence that follows "module 'x' returned"."""


def checked_result(value: Any, limit: int) -> dict[str, Any] | None:
    """``value`` as plain JSON data, or :class:`ResultProblem` saying what is wrong."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ResultProblem(f"{type(value).__name__} as its result (expected a dict of "
                            "outputs, or None)")
    walker = _Walker(limit)
    plain = walker.walk(value, "result", 0)
    assert isinstance(plain, dict)
    return plain


class _Walker:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise ResultProblem(f"a result larger than {self.limit} bytes (max_result_bytes); "
                                "write big data to a file and return its path")

    def walk(self, value: Any, where: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _not_json(where, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            self.spend(len(value) + 2)  # before encoding: a huge string fails here
            self.spend(len(_encode_str(value)) - len(value) - 2)
            return value
        if value is None or isinstance(value, bool):
            self.spend(5)
            return value
        if isinstance(value, int | float):
            return self.number(value, where)
        if isinstance(value, Mapping):
            return self.mapping(value, where, depth)
        if isinstance(value, list | tuple):
            self.spend(2 + len(value))
            return [self.walk(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        if isinstance(value, os.PathLike):
            path = os.fspath(value)
            return self.walk(path, where, depth) if isinstance(path, str) else \
                _refuse(where, path)
        return _refuse(where, value)

    def number(self, value: int | float, where: str) -> int | float:
        if isinstance(value, float) and not math.isfinite(value):
            raise _not_json(where, "NaN" if math.isnan(value) else repr(value))
        try:
            self.spend(len(repr(value)))
        except ValueError:  # an int too long to write out
            raise _not_json(where, "a number too long to write") from None
        return value

    def mapping(self, value: Mapping[Any, Any], where: str, depth: int) -> dict[str, Any]:
        self.spend(2 + len(value))
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ResultProblem(f"an output that is not JSON: {where} has the key "
                                    f"{_short(key)}, not a string")
            self.spend(len(_encode_str(key)) + 1)
            plain[key] = self.walk(item, f"{where}[{_short(key)}]", depth + 1)
        return plain


def _refuse(where: str, value: Any) -> Any:
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    raise _not_json(where, f"{article} {name}")


def _not_json(where: str, what: str) -> ResultProblem:
    return ResultProblem(f"an output that is not JSON: {where} is {what}")


def _short(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def result_cap(config: Mapping[str, Any], default: int) -> int:
    """``results.max_bytes`` of the config tree, checked (a positive whole number)."""
    section = config.get("results") or {}
    value = section.get("max_bytes", default) if isinstance(section, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config results.max_bytes must be a whole number of bytes above 0, "
                          f"not {value!r}")
    return value
