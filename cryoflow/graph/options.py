"""Workflow options: from the graph's ``options`` to ``--name VALUE`` flags and typed values.

Types (docs/graph-format.md, "Options"): ``bool`` (a flag), ``int``, ``float``, ``str``, ``list``
(comma-separated), ``json`` (a JSON text or a path to a JSON file) and ``file`` (must
exist). Without ``type`` the type of the default is used, else ``str``. Dashes and
underscores in a name are the same option.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryoflow.errors import OptionError
from cryoflow.graph.model import Graph, OptionSpec

OPTION_TYPES = ("bool", "int", "float", "str", "list", "json", "file")

RESERVED_FLAGS = frozenset(
    {
        "help",
        "h",
        "ip",
        "reset-counters",
        "name",
        "v",
        "version",
        "node",
        "estimate",
        "standalone",
        "threads",
        "kubernetes",
        "loglevel",
        "debug",
        "nocache",
    }
)
"""The flags CryoCloud's ``ccworkflow`` had (dashed spelling): a workflow option may not
reuse one. Any other name is free: an option named like one of cryoflow's own flags
(``--schema``, ``--state``, ...) takes that flag, and cryoflow's flag stays reachable as
``--cryoflow-NAME`` (see :func:`shadowed_flags`)."""

CRYOFLOW_PREFIX = "cryoflow-"
"""Every cryoflow-only flag ``--NAME`` is also ``--cryoflow-NAME``."""

_DEST_PREFIX = "cryoflow_option:"
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def canonical(name: str) -> str:
    """The spelling used to compare option names: underscores become dashes."""
    return name.replace("_", "-")


def infer_type(raw: Mapping[str, Any]) -> str:
    """The option's type: ``type`` if given, else the type of its default, else str."""
    given = raw.get("type")
    if isinstance(given, str):
        return given
    default = raw.get("default")
    for python_type, name in (
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (list, "list"),
        (dict, "json"),
    ):
        if isinstance(default, python_type):
            return name
    return "str"


def build_option(name: str, raw: Mapping[str, Any]) -> tuple[OptionSpec, list[str]]:
    """Make an :class:`OptionSpec` from the graph's text; also return its problems."""
    kind = infer_type(raw)
    default = raw.get("default")
    problems: list[str] = []
    if default is not None and kind in OPTION_TYPES:
        try:
            default = convert_default(kind, default)
        except OptionError as e:
            problems.append(f"option {name!r}: default {default!r} is not valid: {e}")
    spec = OptionSpec(
        name=name,
        type=kind,
        default=default,
        help=str(raw.get("help", "")),
        required=bool(raw.get("required", False)),
        typed=isinstance(raw.get("type"), str),
    )
    return spec, problems


def convert_default(kind: str, value: Any) -> Any:
    """Turn a default written in the graph into the option's type."""
    if kind == "json" or not isinstance(value, str):
        if kind in ("int", "float") and isinstance(value, bool):
            raise OptionError(f"expected {kind}, got a boolean")
        if kind == "float" and isinstance(value, int):
            return float(value)
        return value
    if kind == "file":
        return value
    return convert(kind, value)


def convert(kind: str, text: str) -> Any:
    """Turn a command-line string into a value of the option type ``kind``."""
    converter = _CONVERTERS.get(kind)
    if converter is None:
        raise OptionError(f"unknown option type {kind!r}; use one of {', '.join(OPTION_TYPES)}")
    return converter(text)


def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise OptionError(f"{text!r} is not a boolean (use true or false)")


def _to_number(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise OptionError(
                f"{text!r} is not a{'n' if kind is int else ''} {kind.__name__}"
            ) from None

    return parse


def _to_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _to_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        path = Path(text)
        if not path.is_file():
            raise OptionError(f"{text[:60]!r} is neither JSON ({first}) nor a JSON file") from None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OptionError(f"JSON file {text} cannot be read: {e}") from None


def _to_file(text: str) -> str:
    if not Path(text).exists():
        raise OptionError(f"file {text!r} does not exist")
    return text


_CONVERTERS: Mapping[str, Callable[[str], Any]] = {
    "bool": _to_bool,
    "int": _to_number(int),
    "float": _to_number(float),
    "str": str,
    "list": _to_list,
    "json": _to_json,
    "file": _to_file,
}


def option_problems(options: Mapping[str, OptionSpec]) -> list[str]:
    """Names that clash with CryoCloud's ``ccworkflow`` flags or with each other."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name, spec in options.items():
        if not _OPTION_NAME.fullmatch(name):
            problems.append(
                f"option {name!r}: a name starts with a letter and holds only letters, "
                "digits, '-' and '_'"
            )
            continue
        flags = [canonical(name)] + ([f"no-{canonical(name)}"] if spec.type == "bool" else [])
        for flag in flags:
            if flag in RESERVED_FLAGS:
                problems.append(
                    f"option {name!r} clashes with ccworkflow's own flag --{flag}; rename it"
                )
            elif flag in seen:
                problems.append(
                    f"option {name!r} clashes with option {seen[flag]!r} (--{flag}); "
                    "dashes and underscores are the same; rename one"
                )
            seen.setdefault(flag, name)
    return problems


def shadowed_flags(options: Mapping[str, OptionSpec], flags: frozenset[str]) -> list[str]:
    """The cryoflow-only ``flags`` (dashed, without ``--``) that workflow options take."""
    taken = set()
    for name, spec in options.items():
        taken.add(canonical(name))
        if spec.type == "bool":
            taken.add(f"no-{canonical(name)}")
    return sorted(f for f in flags if f in taken and f not in RESERVED_FLAGS)


def cryoflow_flags(parser: argparse.ArgumentParser) -> frozenset[str]:
    """The long flags of ``parser`` (dashed, without ``--``) that CryoCloud did not have."""
    return frozenset(
        s[2:] for action in parser._actions for s in action.option_strings
        if s.startswith("--") and s[2:] not in RESERVED_FLAGS
    )


def alias_cryoflow_flags(
    parser: argparse.ArgumentParser, shadowed: frozenset[str],
    aliases: frozenset[str] | None = None,
) -> None:
    """Drop the plain ``--NAME`` of each ``shadowed`` flag of ``parser`` (a workflow
    option takes it) and give it, and each of ``aliases``, a ``--cryoflow-NAME``."""
    wanted = shadowed | (aliases or frozenset())
    for action in list(parser._actions):
        for string in list(action.option_strings):
            flag = string[2:]
            if not string.startswith("--") or flag not in wanted or flag in RESERVED_FLAGS:
                continue
            alias = f"--{CRYOFLOW_PREFIX}{flag}"
            if alias not in parser._option_string_actions:
                action.option_strings = [*action.option_strings, alias]
                parser._option_string_actions[alias] = action
            if flag in shadowed:
                action.option_strings = [o for o in action.option_strings if o != string]
                del parser._option_string_actions[string]


def _dest(name: str) -> str:
    return _DEST_PREFIX + name


def _help_text(spec: OptionSpec) -> str:
    text = spec.help.rstrip(".") if spec.help else "workflow option"
    if spec.required:
        return f"{text} ({spec.type}, required)"
    if spec.default is None:
        return f"{text} ({spec.type})"
    return f"{text} ({spec.type}, default: {json.dumps(spec.default, default=str)})"


def add_option_flags(parser: argparse.ArgumentParser, graph: Graph) -> None:
    """Add one flag per workflow option to ``parser``, in an "options" group."""
    if not graph.options:
        return
    group = parser.add_argument_group(f"options of workflow {graph.name!r}")
    for name, spec in graph.options.items():
        flags = [f"--{name}"]
        if canonical(name) != name:
            flags.append(f"--{canonical(name)}")
        elif "-" in name:
            flags.append(f"--{name.replace('-', '_')}")
        if spec.type == "bool":
            group.add_argument(
                *flags,
                dest=_dest(name),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=_help_text(spec),
            )
        else:
            group.add_argument(
                *flags,
                dest=_dest(name),
                default=None,
                metavar=spec.type.upper(),
                help=_help_text(spec),
            )


def option_values(graph: Graph, namespace: argparse.Namespace) -> dict[str, Any]:
    """Typed values of every option: the command line, else the default, else None.

    Keys are the names as written in the graph; a name with dashes or underscores is
    also given in the other spelling. Raises :class:`OptionError` for a bad value or a
    missing required option.
    """
    values: dict[str, Any] = {}
    for name, spec in graph.options.items():
        given = getattr(namespace, _dest(name), None)
        value = _value_of(spec, given)
        values[name] = value
        for alias in (canonical(name), name.replace("-", "_")):
            values.setdefault(alias, value)
    return values


def _value_of(spec: OptionSpec, given: Any) -> Any:
    if given is None:
        if spec.required:
            raise OptionError(f"option --{spec.name} is required: {spec.help or 'give a value'}")
        if spec.type == "file" and spec.default is not None:
            return _checked(spec, str(spec.default))
        return spec.default
    if isinstance(given, bool):
        return given
    return _checked(spec, given)


def _checked(spec: OptionSpec, text: str) -> Any:
    try:
        return convert(spec.type, text)
    except OptionError as e:
        if spec.type == "int" and not spec.typed:
            try:
                return convert("float", text)
            except OptionError:
                pass
        raise OptionError(f"option --{spec.name}: {e}") from None
