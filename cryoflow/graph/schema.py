"""The published JSON Schema of the graph format, and a fast checker for it.

``schema.json`` (JSON Schema draft 2020-12) is the one description of the file format:
editors use it through ``$schema``, ``ccworkflow --schema`` prints it, and the loader
checks files against it. The loader uses :class:`SchemaChecker`, a small interpreter of
the keywords the schema uses, because a general validator takes most of a second on
a 2,000-node graph; the test suite checks that both agree.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

Path_ = tuple[str | int, ...]

_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "object": (Mapping,),
    "array": (list, tuple),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "number": (int, float),
    "integer": (int, float),
}


_EXACT: Mapping[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "number": (int, float),
    "integer": (int,),
}
"""The common concrete type of each JSON type, for a fast first test."""


def schema_text() -> str:
    """The text of ``schema.json`` as shipped in the package."""
    return resources.files("cryoflow.graph").joinpath("schema.json").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def graph_schema() -> Mapping[str, Any]:
    """The parsed graph schema (read once per process)."""
    schema: Mapping[str, Any] = json.loads(schema_text())
    return schema


def known_keys(definition: str) -> frozenset[str]:
    """The property names the schema allows in ``$defs[definition]``."""
    return frozenset(graph_schema()["$defs"][definition]["properties"])


@dataclass(frozen=True)
class SchemaProblem:
    """One way an instance does not match the schema."""

    path: Path_
    message: str
    unknown_key: str | None = None
    """Set when the problem is a key the schema does not allow."""


def render_path(path: Path_) -> str:
    """``("workflow", "nodes", 2, "args")`` → ``$.workflow.nodes[2].args``."""
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def suggest(word: str, choices: Sequence[str] | frozenset[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_type(value: Any, name: str) -> bool:
    if type(value) in _EXACT[name]:
        return True
    if isinstance(value, bool) and name not in ("boolean",):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[name])


def _same(a: Any, b: Any) -> bool:
    return (
        type(a) is type(b)
        and a == b
        or (
            not isinstance(a, bool)
            and not isinstance(b, bool)
            and isinstance(a, int | float)
            and isinstance(b, int | float)
            and a == b
        )
    )


Check = Callable[[Any, Any, list[SchemaProblem]], bool]
"""A compiled schema: ``check(value, path, out)`` appends problems, returns True if none.

``path`` is a linked list ``(parent_path, key)`` (or ``None`` at the root), so no path
tuple is built unless a problem is found.
"""


def _unlink(path: Any) -> Path_:
    parts: list[str | int] = []
    while path is not None:
        path, key = path
        parts.append(key)
    return tuple(reversed(parts))


def _problem(path: Any, message: str, unknown_key: str | None = None) -> SchemaProblem:
    return SchemaProblem(_unlink(path), message, unknown_key)


@lru_cache(maxsize=1)
def graph_checker() -> SchemaChecker:
    """The compiled checker of the graph schema, built once per process."""
    return SchemaChecker(graph_schema())


class SchemaChecker:
    """Check an instance against the subset of draft 2020-12 that ``schema.json`` uses.

    Keywords: ``$ref`` (local), ``type``, ``enum``, ``properties``,
    ``additionalProperties``, ``required``, ``items``, ``prefixItems``, ``minItems``,
    ``maxItems``, ``minimum``, ``exclusiveMinimum``, ``minLength``, ``if``/``then``.
    The schema is compiled once into closures.
    """

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        self.root = schema if schema is not None else graph_schema()
        self._defs: dict[str, Check] = {}
        self._check = self._compile(self.root)

    def problems(self, instance: Any) -> list[SchemaProblem]:
        """Every problem, in document order."""
        out: list[SchemaProblem] = []
        self._check(instance, None, out)
        return out

    def _compile(self, schema: Any) -> Check:
        if schema is True:
            return _accept
        if schema is False:
            return _reject
        if "$ref" in schema:
            return self._compile_ref(str(schema["$ref"]))
        parts = [c for c in (_type_check(schema), _enum_check(schema), _bounds_check(schema)) if c]
        parts += [
            c for c in (self._if_then(schema), self._object(schema), self._array(schema)) if c
        ]
        return _all_of(parts)

    def _compile_ref(self, ref: str) -> Check:
        if ref not in self._defs:
            self._defs[ref] = _accept  # placeholder while compiling recursive refs
            target: Any = self.root
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            self._defs[ref] = self._compile(target)
        defs = self._defs
        return lambda value, path, out: defs[ref](value, path, out)

    def _if_then(self, schema: Mapping[str, Any]) -> Check | None:
        if "if" not in schema or "then" not in schema:
            return None
        test, then = self._predicate(schema["if"]), self._compile(schema["then"])

        def check(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
            return then(value, path, out) if test(value) else True

        return check

    def _predicate(self, schema: Any) -> Callable[[Any], bool]:
        """Whether a value matches ``schema``, without building messages when it can."""
        if isinstance(schema, Mapping) and set(schema) == {"type"}:
            kinds = schema["type"]
            names = (kinds,) if isinstance(kinds, str) else tuple(kinds)
            return lambda value: any(_is_type(value, name) for name in names)
        full = self._compile(schema)
        return lambda value: full(value, None, [])

    def _object(self, schema: Mapping[str, Any]) -> Check | None:
        if not {"properties", "required", "additionalProperties"} & schema.keys():
            return None
        props = {k: self._compile(v) for k, v in schema.get("properties", {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        extra = None if extra_schema is False else self._compile(extra_schema)
        required = tuple(schema.get("required", ()))

        def check(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
            if type(value) is not dict and not isinstance(value, Mapping):
                return True
            before = len(out)
            for key in required:
                if key not in value:
                    out.append(_problem(path, f"the required key {key!r} is missing"))
            for key, item in value.items():
                sub = props.get(key) if isinstance(key, str) else None
                if sub is not None:
                    sub(item, (path, key), out)
                elif not isinstance(key, str):
                    out.append(_problem(path, f"key {_short(key)} must be a string"))
                elif extra is None:
                    out.append(_problem(path, f"unknown key {key!r}", unknown_key=key))
                else:
                    extra(item, (path, key), out)
            return len(out) == before

        return check

    def _array(self, schema: Mapping[str, Any]) -> Check | None:
        if "items" not in schema and "prefixItems" not in schema:
            return None
        prefix = [self._compile(s) for s in schema.get("prefixItems", ())]
        rest = self._compile(schema.get("items", True))

        def check(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
            if type(value) is not list and not isinstance(value, list | tuple):
                return True
            before = len(out)
            for i, item in enumerate(value):
                (prefix[i] if i < len(prefix) else rest)(item, (path, i), out)
            return len(out) == before

        return check


def _accept(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
    return True


def _reject(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
    out.append(_problem(path, f"{_short(value)} is not allowed here"))
    return False


def _all_of(parts: list[Check]) -> Check:
    if not parts:
        return _accept
    if len(parts) == 1:
        return parts[0]

    def check(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
        for part in parts:
            if not part(value, path, out):
                return False
        return True

    return check


def _type_check(schema: Mapping[str, Any]) -> Check | None:
    kinds = schema.get("type")
    if kinds is None:
        return None
    names = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    exact = frozenset(t for n in names for t in _EXACT[n])
    wanted = " or ".join(repr(k) for k in names)

    def check(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
        if type(value) in exact or any(_is_type(value, name) for name in names):
            return True
        out.append(_problem(path, f"{_short(value)} is not of type {wanted}"))
        return False

    return check


def _enum_check(schema: Mapping[str, Any]) -> Check | None:
    if "enum" not in schema:
        return None
    choices = tuple(schema["enum"])
    words = [c for c in choices if isinstance(c, str)]
    listed = ", ".join(_short(c) for c in choices)

    def check(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
        if any(_same(value, c) for c in choices):
            return True
        hint = suggest(value, words) if isinstance(value, str) else ""
        out.append(_problem(path, f"{_short(value)} is not one of {listed}{hint}"))
        return False

    return check


def _bounds_check(schema: Mapping[str, Any]) -> Check | None:
    keys = {"minimum", "exclusiveMinimum", "minLength", "minItems", "maxItems"}
    if not keys & schema.keys():
        return None
    low, above = schema.get("minimum"), schema.get("exclusiveMinimum")
    min_len, min_items = schema.get("minLength", 0), schema.get("minItems", 0)
    max_items = schema.get("maxItems")

    def check(value: Any, path: Any, out: list[SchemaProblem]) -> bool:
        message = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if low is not None and value < low:
                message = f"{value} is less than {low}"
            elif above is not None and value <= above:
                message = f"{value} must be greater than {above}"
        elif isinstance(value, str) and len(value) < min_len:
            message = "an empty string is not allowed here"
        elif isinstance(value, list | tuple):
            if len(value) < min_items:
                message = f"{_short(value)} has too few items"
            elif max_items is not None and len(value) > max_items:
                message = f"{_short(value)} has too many items"
        if message:
            out.append(_problem(path, message))
        return message is None

    return check


def allowed_keys(path: Path_, root: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The property names the schema allows for the object at ``path``."""
    node: Any = _deref(root or graph_schema(), root or graph_schema())
    base = root or graph_schema()
    for part in path:
        if isinstance(part, int):
            prefix = node.get("prefixItems", ())
            node = prefix[part] if part < len(prefix) else node.get("items", {})
        else:
            props = node.get("properties", {})
            node = props[part] if part in props else node.get("additionalProperties", {})
        node = _deref(node if isinstance(node, Mapping) else {}, base)
    return frozenset(node.get("properties", ()))


def _deref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    for _ in range(32):
        if "$ref" in schema:
            target: Any = root
            for part in str(schema["$ref"]).removeprefix("#/").split("/"):
                target = target[part]
            schema = target
        elif "then" in schema and "properties" not in schema:
            schema = schema["then"]
        else:
            break
    return schema
