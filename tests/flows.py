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


def total(input: list[int]) -> list[int]:  # noqa: A002 - ColonyOS calls it input
    return [sum(input)]


class MyFlow(BaseWorkFlow):
    """Three steps; ``b`` and ``c`` get ``a``'s result."""

    def a(self) -> str:
        return "a"

    def b(self, a: str) -> str:
        return a + "b"

    def c(self, a: str) -> str:
        return a + "c"
