"""Workflow graphs: the immutable model, its loaders and its checks.

``load_graph`` reads every notation (CryoCloud JSON/YAML, legacy files, function-spec
lists, flow strings) into one checked :class:`Graph`.
"""

from cryoflow.graph.loader import load_graph
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
from cryoflow.graph.modules import ModuleFinder, ModuleInfo, load_module
from cryoflow.graph.reading import read_graph_file
from cryoflow.graph.schema import graph_schema, schema_text

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
