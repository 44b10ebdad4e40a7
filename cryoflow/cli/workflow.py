"""``ccworkflow GRAPH [--OPTION VALUE ...]``: check, explain or run a workflow graph.

The command line is read twice: once for cryoflow's own flags (to find and load the
graph), then again with the graph's options added as flags, so that
``ccworkflow GRAPH --help`` lists them. Exit codes: 0 when a check passes, 2 for
invalid input (graph, options, flags), otherwise what the run returns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

import cryoflow
from cryoflow.cli.common import Parser
from cryoflow.daemon.settings import RunSettings
from cryoflow.errors import ConfigError, GraphError, OptionError
from cryoflow.graph import ENTRY, ArgSource, ArgSpec, Graph, Node, RunOn, load_graph, schema_text
from cryoflow.graph.options import (
    add_option_flags,
    alias_cryoflow_flags,
    cryoflow_flags,
    option_values,
    shadowed_flags,
)

EXIT_OK = 0
EXIT_INVALID = 2
LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ccworkflow`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except SystemExit as e:  # argparse: --help, --version or a bad flag
        return e.code if isinstance(e.code, int) else EXIT_INVALID


def _main(args: list[str]) -> int:
    first = _first_pass(args)
    if "--cryoflow-schema" in args or (first.schema and first.graph is None):
        print(schema_text(), end="")
        return EXIT_OK
    if first.graph is None:
        build_parser().parse_args(args)  # prints help for -h
        return _fail(["give a graph file, e.g. ccworkflow workflows/demo.json --validate"])
    graph = _load(first, help_asked="-h" in args or "--help" in args)
    if graph is None:
        return EXIT_INVALID
    parser = build_parser()
    shadowed = frozenset(shadowed_flags(graph.options, cryoflow_flags(parser)))
    if first.schema and "schema" not in shadowed:
        print(schema_text(), end="")
        return EXIT_OK
    for flag in sorted(shadowed):
        _warn(f"the workflow's option takes --{flag}; ccworkflow's own --{flag} is "
              f"--cryoflow-{flag} with this graph")
    alias_cryoflow_flags(parser, shadowed)
    add_option_flags(parser, graph)
    ns = parser.parse_args(args)
    return _act(graph, ns)


_FIRST_PASS = frozenset({"modules", "lenient", "schema"})
"""The flags needed before the graph is loaded (also as --cryoflow-NAME)."""


def _first_pass(args: list[str]) -> argparse.Namespace:
    """The graph, --modules, --lenient and --schema, before the graph's options are known.

    A value a workflow option takes (``--workers many``) may not suit cryoflow's flag of
    the same name; then the other flags are left for the second pass."""
    parser = build_parser(add_help=False)
    alias_cryoflow_flags(parser, frozenset(), _FIRST_PASS)
    parser.exit_on_error = False
    try:
        return parser.parse_known_args(args)[0]
    except argparse.ArgumentError:
        parser = build_parser(add_help=False)
        alias_cryoflow_flags(parser, cryoflow_flags(parser) - _FIRST_PASS, _FIRST_PASS)
        return parser.parse_known_args(args)[0]


CRYOCLOUD_FLAGS = {
    "--ip": "--ip is CryoCloud's; cryoflow's head listens on 127.0.0.1 by itself "
            "(--http HOST:PORT to listen elsewhere)",
    "--reset-counters": "--reset-counters is CryoCloud's; cryoflow keeps its counts in the "
                        "state folder (--fresh starts over)",
    "--name": "--name is CryoCloud's; cryoflow names the run after the graph's workflow name "
              "and keeps its state in .cryoflow/NAME (--state DIR for another folder)",
    "--node": "--node is CryoCloud's; pin a node's jobs to a machine with its \"ccnode\" key "
              "in the graph",
    "--estimate": "--estimate is CryoCloud's; cryoflow does not estimate run times "
                  "(--explain shows what would run)",
}
"""CryoCloud's ccworkflow flags that cryoflow does not take, with what to use instead."""


def build_parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    """The parser of ``ccworkflow``'s own flags (a graph's options are added later)."""
    parser = Parser(
        prog="ccworkflow",
        description="Check, explain or run a cryoflow workflow graph.",
        add_help=add_help,
        allow_abbrev=False,
    )
    parser.retired = CRYOCLOUD_FLAGS
    parser.add_argument("graph", nargs="?", metavar="GRAPH", help="graph file (JSON or YAML)")
    parser.add_argument("--version", action="version", version=f"cryoflow {cryoflow.__version__}")
    _add_actions(parser.add_argument_group("what to do (default: run the graph)"))
    _add_run_flags(parser.add_argument_group("running"))
    return parser


def _add_actions(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--validate", action="store_true", help="check the graph and exit")
    group.add_argument("--explain", action="store_true", help="print the resolved graph")
    group.add_argument("--schema", action="store_true", help="print the graph JSON Schema")
    group.add_argument("--dot", action="store_true", help="print the graph as Graphviz dot")
    group.add_argument("--lenient", action="store_true", help="unknown keys are warnings")
    group.add_argument(
        "--modules",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a folder of modules (repeatable; also CRYOFLOW_MODULES)",
    )


def _add_run_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--state", type=Path, metavar="DIR", help="state folder (default .cryoflow/NAME)")
    add("--fresh", action="store_true", help="discard the saved state and start over")
    add("--workers", type=_count, metavar="N", help="normal workers (default: one per CPU)")
    add("--admin-workers", type=_count, default=1, metavar="N", help="admin workers (1)")
    add("--gpus", type=_count, metavar="N", help="GPU workers (default: as detected)")
    add("--config", type=Path, metavar="FILE", help="config tree (TOML, YAML or JSON)")
    add("--report", type=Path, metavar="FILE", help="write a JSON report on exit")
    add("--loglevel", type=str.upper, choices=LOGLEVELS, default="INFO", help="log level")
    add("--http", metavar="HOST:PORT", type=_host_port, help="HTTP API (127.0.0.1:0)")
    add("--no-http", action="store_true", help="no HTTP API")
    add("--stay", action="store_true",
        help="keep serving the web view and API after the run, until Ctrl-C")
    add("--token-file", type=Path, metavar="FILE",
        help="file holding the API's read-only token (or set CRYOFLOW_API_TOKEN); "
             "needed to listen beyond 127.0.0.1")
    add("--admin-token-file", type=Path, metavar="FILE",
        help="file holding the token for actions: retry, cancel, pause "
             "(or set CRYOFLOW_ADMIN_TOKEN; default: the read-only token)")
    add("--executor", choices=("local", "dask"), default="local", help="where jobs run")
    add("--scheduler", metavar="URL", help="Dask scheduler, e.g. tcp://host:8786")
    add("--kubernetes", action="store_true", help="run 'image' nodes as Kubernetes Jobs")
    add("--nocache", action="store_true", help="ignore cached results")
    add("--debug", action="store_true", help="as CryoCloud's ccworkflow: --loglevel DEBUG")
    add("--threads", type=_count, metavar="N",
        help="as CryoCloud's ccworkflow: --workers N when --workers is not given")
    add("--standalone", action="store_true",
        help="as CryoCloud's ccworkflow: run on this machine (the default; it changes nothing)")
    add("--max-result-bytes", type=_positive, metavar="N",
        help="fail a job whose result is larger than N bytes as JSON (16 MiB; config "
             "results.max_bytes)")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not above 0")
    return value


def _host_port(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return text


def _module_paths(ns: argparse.Namespace) -> tuple[Path, ...]:
    from_env = os.environ.get("CRYOFLOW_MODULES", "")
    return (*ns.modules, *(Path(p) for p in from_env.split(os.pathsep) if p))


def _load(ns: argparse.Namespace, *, help_asked: bool) -> Graph | None:
    try:
        return load_graph(ns.graph, module_paths=_module_paths(ns), lenient=ns.lenient, warn=_warn)
    except GraphError as e:
        if help_asked:
            build_parser().print_help()
        _fail(getattr(e, "problems", None) or [str(e)])
        return None


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _fail(problems: Sequence[str]) -> int:
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if len(problems) > 1:
        print(f"{len(problems)} problems found", file=sys.stderr)
    return EXIT_INVALID


def _act(graph: Graph, ns: argparse.Namespace) -> int:
    problems = callable_problems(graph)
    if problems and (ns.validate or not (ns.explain or ns.dot)):
        return _fail(problems)
    if ns.validate:
        print(f"{graph.source}: ok ({_summary(graph)})")
        return EXIT_OK
    if ns.explain or ns.dot:
        print(explain(graph) if ns.explain else to_dot(graph), end="")
        return EXIT_OK
    try:
        options = option_values(graph, ns)
        settings = run_settings(ns, graph.config)
    except (OptionError, ConfigError) as e:
        return _fail([str(e)])
    from cryoflow.cli.run import run_workflow

    return run_workflow(graph, options, settings)


def callable_problems(graph: Graph) -> list[str]:
    """Why each Python callable that this machine's workers would call cannot be imported.

    Nodes for external executors (``executortype``) and ``inline:`` functions are left
    alone: other processes resolve them.
    """
    from cryoflow.pyapi.calls import INLINE_PREFIX, CallableError, resolve

    problems = []
    for node in graph:
        spec = node.args.get("callable")
        if spec is None or spec.source is not ArgSource.LITERAL or node.extra.get("executortype"):
            continue
        ref, path = spec.value, node.args.get("path")
        if not isinstance(ref, str) or ref.startswith(INLINE_PREFIX) or ":" not in ref:
            continue
        folder = path.value if path is not None and path.source is ArgSource.LITERAL else None
        try:
            resolve(ref, folder if isinstance(folder, str) else None)
        except CallableError as e:
            problems.append(f"{graph.source}: node '{node.name}': {e}; put the module on "
                            "PYTHONPATH or give the node's 'path'")
    return problems


def _summary(graph: Graph) -> str:
    inputs = len(graph.input_nodes)
    return (
        f"{len(graph)} node{'s' * (len(graph) != 1)}, {inputs} input"
        f"{'s' * (inputs != 1)}, {len(graph.options)} option{'s' * (len(graph.options) != 1)}"
    )


def run_settings(ns: argparse.Namespace, base: Mapping[str, Any] | None = None) -> RunSettings:
    """The :class:`RunSettings` that the parsed flags ask for.

    The config tree is ``base`` (the graph's own ``config``) with the ``--config`` file
    laid over it, key by key.
    """
    config = merge_config(base or {}, load_config(ns.config) if ns.config else {})
    if ns.max_result_bytes is not None:
        config = merge_config(config, {"results": {"max_bytes": ns.max_result_bytes}})
    return RunSettings(
        state_dir=ns.state,
        fresh=ns.fresh,
        module_paths=_module_paths(ns),
        workers=ns.workers if ns.workers is not None else ns.threads,
        admin_workers=ns.admin_workers,
        gpus=ns.gpus,
        config=config,
        report_path=ns.report,
        loglevel="DEBUG" if ns.debug else ns.loglevel,
        http=None if ns.no_http else (ns.http or "127.0.0.1:0"),
        http_token=read_token(ns.token_file),
        admin_token=read_token(ns.admin_token_file),
        stay=ns.stay,
        executor=ns.executor,
        scheduler=ns.scheduler,
        kubernetes=ns.kubernetes,
        nocache=ns.nocache,
    )


def read_token(path: Path | None) -> str | None:
    """The token in ``path`` (surrounding whitespace removed); raise :class:`ConfigError`."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"token file {path} cannot be read: {e}") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"token file {path} must hold one token: one line without spaces")
    return token


def load_config(path: Path) -> Mapping[str, Any]:
    """Read a config tree from a TOML, YAML or JSON file; raise :class:`ConfigError`."""
    parse = _CONFIG_PARSERS.get(path.suffix.lower())
    if parse is None:
        raise ConfigError(f"config file {path}: use a .toml, .yaml, .yml or .json file")
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a table of keys, not {type(data).__name__}"
        )
    return data


def merge_config(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``: nested tables merge, other values replace."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_config(below, value)
        else:
            merged[key] = value
    return merged


_CONFIG_PARSERS: Mapping[str, Callable[[str], Any]] = {
    ".toml": tomllib.loads,
    ".yaml": yaml.safe_load,
    ".yml": yaml.safe_load,
    ".json": json.loads,
}


# --explain and --dot


def explain(graph: Graph) -> str:
    """The resolved graph as text: options, nodes, edges, flow grouping, worker classes."""
    lines = [f"workflow {graph.name!r} from {graph.source}"]
    if graph.description:
        lines.append(f"  {graph.description}")
    lines += _explain_options(graph)
    lines.append("nodes (in the order they can run):")
    for node in graph:
        lines += _explain_node(node)
    lines.append("edges:")
    lines += [f"  {parent} -> {child}" for parent, child in graph.edges]
    if graph.flow is not None:
        lines.append(f"flow grouping: {graph.flow}")
    lines.append("worker classes needed:")
    lines += _explain_classes(graph)
    return "\n".join(lines) + "\n"


def _explain_options(graph: Graph) -> list[str]:
    if not graph.options:
        return ["options: none"]
    lines = ["options:"]
    for spec in graph.options.values():
        default = (
            "required" if spec.required else f"default {json.dumps(spec.default, default=str)}"
        )
        lines.append(f"  --{spec.name}  {spec.type}, {default}  {spec.help}".rstrip())
    return lines


def _explain_node(node: Node) -> list[str]:
    kind = "input node" if node.is_input else ("global node" if node.is_global else "node")
    lines = [
        f"  {node.name}: {kind}, module {node.module}"
        + (f" ({node.module_ref})" if node.module_ref else "")
    ]
    lines.append(f"      after: {', '.join(node.parents)}")
    details = _node_details(node)
    if details:
        lines.append(f"      {'; '.join(details)}")
    for name, spec in node.args.items():
        lines.append(f"      arg {name} = {_describe_arg(spec)}")
    for key in ("callable", "funcname", "executortype"):
        if node.extra.get(key) is not None:
            lines.append(f"      {key}: {node.extra[key]}")
    return lines


def _node_details(node: Node) -> list[str]:
    details = [f"worker {node.needs.value}", f"priority {node.priority}"]
    if node.run_on is not RunOn.ALWAYS:
        details.append(f"runOn {node.run_on.value}")
    optional = [
        ("runIf", node.run_if_text),
        ("splitOn", node.split_on),
        ("loop", node.loop),
        ("timeout", node.timeout_s),
        ("max_parallel", node.max_parallel),
        ("docker", node.docker),
        ("image", node.image),
        ("serviceURL", node.service_url),
    ]
    details += [f"{key} {value}" for key, value in optional if value is not None]
    flags = [
        ("merge", node.merge),
        ("deferred", node.deferred),
        ("resolveOnAny", node.resolve_on_any),
        ("runOnHead", node.run_on_head),
    ]
    details += [key for key, value in flags if value]
    if node.retries:
        details.append(f"retries {node.retries} (delay {node.retry_delay_s:g} s)")
    return details


def _describe_arg(spec: ArgSpec) -> str:
    if spec.source is ArgSource.LITERAL:
        text = json.dumps(spec.value, default=str)
    elif spec.source is ArgSource.DEFAULT:
        text = f"default {json.dumps(spec.default, default=str)}"
    else:
        text = f"{spec.source.value} {spec.ref}"
        if spec.has_default:
            text += f" (default {json.dumps(spec.default, default=str)})"
    extras = [spec.type] if spec.type else []
    extras += [f"{k}={v}" for k, v in spec.flags.items()]
    return text + (f" [{', '.join(extras)}]" if extras else "")


def _explain_classes(graph: Graph) -> list[str]:
    classes: dict[str, list[str]] = {}
    for node in graph:
        if not node.is_input:
            classes.setdefault(node.needs.value, []).append(node.name)
    return [f"  {cls}: {', '.join(names)}" for cls, names in sorted(classes.items())] or ["  none"]


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz dot: inputs as ellipses, global nodes dashed."""
    lines = [
        f"digraph {json.dumps(graph.name)} {{",
        "  rankdir=TB;",
        f"  {json.dumps(ENTRY)} [shape=point];",
    ]
    for node in graph:
        shape = "ellipse" if node.is_input else "box"
        style = ", style=dashed" if node.is_global else ""
        label = json.dumps(f"{node.name}\n{node.module}")
        lines.append(f"  {json.dumps(node.name)} [label={label}, shape={shape}{style}];")
    for parent, child in graph.edges:
        lines.append(f"  {json.dumps(parent)} -> {json.dumps(child)};")
    return "\n".join([*lines, "}"]) + "\n"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
