"""Named crash and delay points for fault tests: ``CRYOFLOW_FAILPOINTS``.

The value is a comma-separated list of ``name=action@N``: ``crash`` exits the process
at once with status 137 (as a SIGKILL would) on the N-th time the point is reached,
``delay:2s`` sleeps there. ``@N`` defaults to ``@1``. With no spec, ``hit`` costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryoflow.errors import ConfigError

ENV = "CRYOFLOW_FAILPOINTS"


@dataclass(frozen=True)
class _Point:
    action: str
    delay_s: float
    at: int


class Failpoints:
    """Parsed failpoints with a per-name hit counter."""

    def __init__(self, spec: str = "") -> None:
        self._points = dict(_parse(spec))
        self._hits: dict[str, int] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Failpoints:
        return cls(env.get(ENV, ""))

    def hit(self, name: str) -> None:
        """Count a pass through ``name``; crash or sleep when its turn has come."""
        point = self._points.get(name)
        if point is None:
            return
        count = self._hits[name] = self._hits.get(name, 0) + 1
        if count != point.at:
            return
        if point.action == "crash":
            os._exit(137)
        time.sleep(point.delay_s)


def _parse(spec: str) -> list[tuple[str, _Point]]:
    points = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, rest = part.partition("=")
        action, _, at = rest.partition("@")
        if not eq or not name or not action:
            raise ConfigError(f"{ENV}: cannot read {part!r}; write name=crash@N or "
                              "name=delay:2s@N")
        points.append((name.strip(), _point(part, action.strip(), at.strip() or "1")))
    return points


def _point(part: str, action: str, at: str) -> _Point:
    if not at.isdigit():
        raise ConfigError(f"{ENV}: in {part!r}, write a whole number after '@'")
    if action == "crash":
        return _Point("crash", 0.0, int(at))
    if action.startswith("delay:"):
        seconds = action[len("delay:"):].removesuffix("s")
        try:
            return _Point("delay", float(seconds), int(at))
        except ValueError:
            pass
    raise ConfigError(f"{ENV}: in {part!r}, the action must be crash or delay:SECONDSs")
