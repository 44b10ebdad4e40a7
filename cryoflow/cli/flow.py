"""``cryoflow flow``: Cloudmesh's ``cms flow`` commands over stored flow definitions.

::

    cryoflow flow list [NAME]                 flows, or one flow's nodes and runs
    cryoflow flow add FILE                    store the flow a YAML file defines
    cryoflow flow run NAME [--inline]         run it once; exit 1 when the run failed
    cryoflow flow node add NAME --flow F [--function REF] [--after NODE ...]
    cryoflow flow node delete NAME --flow F
    cryoflow flow edge add|delete|invert FROM TO --flow F
    cryoflow flow view NAME                   serve the live web view of the flow

Flows live in ``--root`` (default ``./.cryoflow``), one state folder per flow holding
its ``flow.db`` (definition and active records) and ``state.db``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import webbrowser
from pathlib import Path
from typing import Any

from cryoflow.api.server import start_api
from cryoflow.daemon.root import build_executor, running_head
from cryoflow.daemon.settings import RunSettings
from cryoflow.errors import CryoflowError
from cryoflow.graph.model import Graph
from cryoflow.pyapi import edits
from cryoflow.pyapi.catalog import CATALOG_NAME, DEFAULT_ROOT, FlowCatalog, FlowDefinition
from cryoflow.pyapi.records import RunRecord, RunStatus
from cryoflow.pyapi.running import FlowRun, RunSpec
from cryoflow.pyapi.workflow import definition_graph
from cryoflow.pyapi.yamlflow import read_flow_file

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(commands: Any) -> None:
    """Add ``flow`` and its subcommands to the ``cryoflow`` subcommands."""
    flow = commands.add_parser("flow", help="Cloudmesh-style flows: list, add, run, edit, view")
    flow.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                      help="the folder of the flows' state folders (default: ./.cryoflow)")
    sub = flow.add_subparsers(dest="flow_command", required=True)
    listing = sub.add_parser("list", help="list the flows, or one flow's nodes and runs")
    listing.add_argument("name", nargs="?")
    listing.set_defaults(handler=do_list)
    add = sub.add_parser("add", help="store the flow a YAML file defines")
    add.add_argument("file", type=Path)
    add.set_defaults(handler=do_add)
    run = sub.add_parser("run", help="run a stored flow once")
    run.add_argument("name")
    run.add_argument("--inline", action="store_true", help="run in this process's threads")
    run.add_argument("--workers", type=int, default=None, metavar="N")
    run.set_defaults(handler=do_run)
    _edit_commands(sub)
    view = sub.add_parser("view", help="serve the web view of a flow (until Ctrl-C)")
    view.add_argument("name")
    view.add_argument("--port", type=int, default=0)
    view.add_argument("--no-browser", action="store_true", help="only print the URL")
    view.add_argument("--seconds", type=float, default=None, help="stop after this long")
    view.set_defaults(handler=do_view)


def _edit_commands(sub: Any) -> None:
    node = sub.add_parser("node", help="add or delete a node").add_subparsers(
        dest="node_command", required=True)
    node_add = node.add_parser("add")
    node_add.add_argument("node")
    node_add.add_argument("--function", help="its function: package.module:function")
    node_add.add_argument("--after", nargs="*", default=[], help="nodes it depends on")
    node_delete = node.add_parser("delete")
    node_delete.add_argument("node")
    node_add.set_defaults(handler=do_edit, edit=lambda f, a: edits.add_node(
        f, a.node, a.function, tuple(a.after)))
    node_delete.set_defaults(handler=do_edit, edit=lambda f, a: edits.delete_node(f, a.node))
    edge = sub.add_parser("edge", help="add, delete or invert an edge FROM TO").add_subparsers(
        dest="edge_command", required=True)
    for name, change in (("add", edits.add_edge), ("delete", edits.delete_edge),
                         ("invert", edits.invert_edge)):
        command = edge.add_parser(name)
        command.add_argument("source", metavar="FROM")
        command.add_argument("target", metavar="TO")
        command.set_defaults(handler=do_edit,
                            edit=lambda f, a, change=change: change(f, a.source, a.target))
    for parser in (node_add, node_delete, *edge.choices.values()):
        parser.add_argument("--flow", required=True, help="the flow's name")


# ----------------------------------------------------------------------------- handlers


def flow_dir(root: Path, name: str) -> Path:
    """The state folder of flow ``name``; :class:`CryoflowError` when it holds no flow."""
    folder = root / name
    if not (folder / CATALOG_NAME).is_file():
        known = ", ".join(flow_names(root)) or "none"
        raise CryoflowError(f"there is no flow {name!r} in {root} (flows: {known}); "
                            "add it with 'cryoflow flow add FILE'")
    return folder


def flow_names(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob(f"*/{CATALOG_NAME}"))


def do_list(args: argparse.Namespace) -> int:
    if args.name is None:
        for name in flow_names(args.root):
            with FlowCatalog(args.root / name) as catalog:
                runs = catalog.runs()
                nodes = catalog.definition().nodes
            last = runs[-1]["status"] if runs else "never run"
            print(f"{name}  {len(nodes)} nodes  {len(runs)} runs  last: {last}")
        return EXIT_OK
    with FlowCatalog(flow_dir(args.root, args.name)) as catalog:
        definition = catalog.definition()
        runs = catalog.runs()
    print(f"flow {definition.name}: {definition.text or '(edited; no flow string)'}")
    for node, deps in definition.nodes.items():
        task = definition.tasks.get(node)
        function = task.get("function") if isinstance(task, dict) else task
        print(f"  {node}  after: {', '.join(deps) or '-'}  function: {function or '-'}")
    for run in runs:
        print(f"  run {run['id']}: {run['status']}")
    return EXIT_OK


def do_add(args: argparse.Namespace) -> int:
    definition = read_flow_file(args.file)
    with FlowCatalog(args.root / definition.name) as catalog:
        catalog.define(definition)
    print(f"added flow {definition.name} ({len(definition.nodes)} nodes) to "
          f"{args.root / definition.name}")
    return EXIT_OK


def do_edit(args: argparse.Namespace) -> int:
    with FlowCatalog(flow_dir(args.root, args.flow)) as catalog:
        changed: FlowDefinition = args.edit(catalog.definition(), args)
        catalog.define(changed)
    for node, deps in changed.nodes.items():
        print(f"{node}  after: {', '.join(deps) or '-'}")
    return EXIT_OK


def do_run(args: argparse.Namespace) -> int:
    folder = flow_dir(args.root, args.name)
    with FlowCatalog(folder) as catalog:
        graph = definition_graph(catalog.definition())
    spec = RunSpec(graph=graph, state_dir=folder, inline=args.inline, workers=args.workers,
                   track=True)
    record = FlowRun(spec).start().wait()
    print_record(record)
    return EXIT_OK if record.status is RunStatus.FINISHED else EXIT_FAILED


def print_record(record: RunRecord) -> None:
    print(record.summary())
    for node in record.nodes.values():
        shown = node.error if node.error else node.result
        print(f"  {node.name}  {node.status.value}  {shown!r}")


def do_view(args: argparse.Namespace) -> int:
    folder = flow_dir(args.root, args.name)
    with FlowCatalog(folder) as catalog:
        definition = catalog.definition()
    placeholder = {n: {"function": f"view:{n}"} for n in definition.nodes}
    graph = definition_graph(FlowDefinition(definition.name, definition.nodes,
                                            {**placeholder, **definition.tasks}))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(graph, folder, args))
    return EXIT_OK


async def _serve(graph: Graph, folder: Path, args: argparse.Namespace) -> None:
    executor = build_executor(RunSettings(executor="inline", workers=2))
    async with running_head(graph, folder, executor) as head:
        head.pause()  # a view runs nothing
        server = await start_api(head, port=args.port)
        print(f"web view of {graph.name}: {server.url}", flush=True)
        if not args.no_browser:
            webbrowser.open(server.url)
        try:
            await (asyncio.sleep(args.seconds) if args.seconds is not None
                   else asyncio.Event().wait())
        finally:
            await server.stop()
