"""Loading and validating graphs: a generated 2,000-node / 4,000-edge graph and a 20-node one.

    .venv/bin/python bench/graph_bench.py [--repeats N]

Prints the median of N loads (file read, JSON parse, schema, model, semantic checks);
Python start-up is not included. Targets: 2,000 nodes under 0.5 s, 20 nodes under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryoflow.graph import load_graph


def generated(nodes: int) -> dict[str, Any]:
    """A layered graph: every node after the first two layers has two parents."""
    items: list[dict[str, Any]] = [{"name": "In", "module": "cmdline"}]
    for i in range(1, nodes):
        parents = ["In"] if i < 3 else [f"n{i - 1}", f"n{i - 2}"]
        items.append({"name": f"n{i}", "module": "noop", "downstreamOf": parents,
                      "args": {"time": {"output": "parent.time", "default": 0}}})
    return {"workflow": {"name": f"bench-{nodes}", "nodes": items}}


def median_load_s(path: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_graph(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for count, target in ((2000, 0.5), (20, 0.05)):
            path = Path(tmp) / f"g{count}.json"
            path.write_text(json.dumps(generated(count)))
            load_graph(path)  # warm: imports, schema compilation
            took = median_load_s(path, ns.repeats)
            rows.append((count, took, target))
    print(f"{'graph':<22}{'median s':>10}{'target s':>10}")
    for count, took, target in rows:
        edges = 2 * count - 5 if count > 3 else count - 1
        print(f"{f'{count} nodes/{edges} edges':<22}{took:>10.3f}{target:>10.3f}")


if __name__ == "__main__":
    main()
