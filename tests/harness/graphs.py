"""Small builders for the JSON graphs that fault and CLI tests run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .ledger import Ledger


def node(name: str, module: str, after: str | Iterable[str] | None = "In",
         **keys: Any) -> dict[str, Any]:
    """A node dict; ``after`` names its parents (None: a direct child of entry)."""
    spec: dict[str, Any] = {"name": name, "module": module, **keys}
    if after is not None:
        spec["downstreamOf"] = [after] if isinstance(after, str) else list(after)
    return spec


def probe(name: str, module: str, ledger: Ledger, after: str | Iterable[str] | None = "In",
          args: Mapping[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """A node running a probe module that leaves its markers in ``ledger``."""
    return node(name, module, after, args={"ledger_dir": str(ledger.root), **(args or {})},
                **keys)


def feed(ledger: Ledger, *, once: bool = True, rate: float = 0, window: int = 1,
         name: str = "In") -> dict[str, Any]:
    """The input node: ``probe_feed_once`` (singlerun) or ``probe_feed`` (permanent)."""
    module = "probe_feed_once" if once else "probe_feed"
    args = {"ledger_dir": str(ledger.root), "rate": rate, "window": window}
    return node(name, module, None, args=args)


def write_graph(path: Path, name: str, nodes: Iterable[Mapping[str, Any]],
                options: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"workflow": {...}}`` to ``path`` and return it."""
    workflow: dict[str, Any] = {"name": name, "nodes": list(nodes)}
    if options:
        workflow["options"] = dict(options)
    path.write_text(json.dumps({"workflow": workflow}, indent=1))
    return path


def data_items(folder: Path, count: int, *, prefix: str = "p",
               **fields: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``count`` items, each naming a small file of its own; also their golden sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    items, golden = [], {}
    for index in range(count):
        probe_id = f"{prefix}{index:05d}"
        path = folder / f"{probe_id}.bin"
        content = f"{probe_id}:".encode() * (1 + index % 7)
        path.write_bytes(content)
        items.append({"probe_id": probe_id, "path": str(path), **fields})
        golden[probe_id] = hashlib.sha256(content).hexdigest()
    return items, golden
