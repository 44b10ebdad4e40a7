"""Workflow graphs: the immutable model, its loaders and its checks.

``load_graph`` reads every notation (CryoCloud JSON/YAML, legacy files, function-spec
lists, flow strings) into one checked :class:`Graph`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from cryoflow.graph.model import (
    ENTRY,
    STAT_NAMES,
    ArgSource,
    ArgSpec,
    CacheSpec,
    Graph,
    Node,
    OptionSpec,
    Outcome,
    PostSpec,
    RunOn,
    WorkerClass,
    frozen_map,
)

if TYPE_CHECKING:
    from cryoflow.graph.loader import load_graph
    from cryoflow.graph.modules import ModuleFinder, ModuleInfo, load_module
    from cryoflow.graph.reading import read_graph_file
    from cryoflow.graph.schema import graph_schema, schema_text

_LAZY = {
    "load_graph": "cryoflow.graph.loader",
    "ModuleFinder": "cryoflow.graph.modules",
    "ModuleInfo": "cryoflow.graph.modules",
    "load_module": "cryoflow.graph.modules",
    "read_graph_file": "cryoflow.graph.reading",
    "graph_schema": "cryoflow.graph.schema",
    "schema_text": "cryoflow.graph.schema",
}


def __getattr__(name: str) -> Any:
    """Import the loaders on first use: workers need only the model."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cryoflow.graph' has no attribute {name!r}")


__all__ = [
    "ENTRY",
    "STAT_NAMES",
    "ArgSource",
    "ArgSpec",
    "CacheSpec",
    "Graph",
    "ModuleFinder",
    "ModuleInfo",
    "Node",
    "OptionSpec",
    "Outcome",
    "PostSpec",
    "RunOn",
    "WorkerClass",
    "frozen_map",
    "graph_schema",
    "load_graph",
    "load_module",
    "read_graph_file",
    "schema_text",
]
