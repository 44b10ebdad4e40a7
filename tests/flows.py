"""Importable functions and workflow classes for the Python API tests.

Worker processes import them by module and name (``flows:fa``), so they live here
rather than inside the test files.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cryoflow import BaseWorkFlow


def fa() -> int:
    return 1


def fb(a: int) -> int:
    return a + 10


def fc(a: int) -> int:
    return a + 100


def fd(inputs: list[Any]) -> list[Any]:
    return inputs


def pid() -> int:
    return os.getpid()


def boom() -> None:
    raise ValueError("boom went a")


def styled() -> dict[str, Any]:
    return {"status": "done", "color": "green", "shape": "circle", "label": "a",
            "value": {"x": [1, 2.5, None]}}


def slow() -> str:
    time.sleep(5)
    return "late"


def env_value() -> str | None:
    return os.environ.get("GREETING")


def gen() -> list[int]:
    return [1, 2, 3]


def total(input: list[int]) -> list[int]:
    return [sum(input)]


class MyFlow(BaseWorkFlow):
    """Three steps; ``b`` and ``c`` get ``a``'s result."""

    def a(self) -> str:
        return "a"

    def b(self, a: str) -> str:
        return a + "b"

    def c(self, a: str) -> str:
        return a + "c"


def grow(worker: Any) -> str:
    """Adds a child ``extra`` that runs ``fa``; the run must be inline (``flows`` import)."""
    from cryoflow.colony.dynamic import add_child

    add_child(worker, {"nodename": "extra", "funcname": "flows:fa"})
    return "grew"


def grow_between(worker: Any) -> str:
    """Inserts ``mid`` (running ``fb`` on this node's result) before this node's children."""
    from cryoflow.colony.dynamic import add_child

    add_child(worker, {"nodename": "mid", "funcname": "flows:plus_one"}, insert=True)
    return "grew"


def plus_one(input: list[Any]) -> int:
    return len(input) + 1


def grow_a_cycle(worker: Any) -> str:
    """Asks for a child that depends on this node's own child: refused."""
    from cryoflow.colony.dynamic import add_child

    add_child(worker, {"nodename": "loop", "funcname": "flows:fa",
                       "conditions": {"dependencies": ["after"]}}, insert=True)
    return "tried"
