"""Attributes: key/value data that the processes of one workflow share (as in ColonyOS).

An executor adds an attribute to the process it runs (``POST
/api/v1/processes/PID/attributes`` with ``key`` and ``value``, any JSON value); every
process of the same workflow then sees it, in the ``attributes`` of its view (what
``assign`` hands over and ``GET /api/v1/processes/PID`` answers), and anyone may read
one by its id (``GET /api/v1/attributes/AID``). A later attribute with the same key
does not replace an earlier one: both are listed, oldest first.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from cryoflow.errors import CryoflowError

MAX_KEY_CHARS = 200
MAX_VALUE_BYTES = 1_000_000


class AttributeProblem(CryoflowError):
    """An attribute cannot be added (bad key or value) or is not there."""


@dataclass(frozen=True)
class Attribute:
    """One attribute: set by the process ``targetid`` of workflow ``group``."""

    attributeid: str
    targetid: str
    key: str
    value: Any
    added: float

    def view(self) -> dict[str, Any]:
        return {"attributeid": self.attributeid, "targetid": self.targetid,
                "key": self.key, "value": self.value, "added": self.added}


class AttributeStore:
    """The attributes of every workflow, kept in memory while the server runs."""

    def __init__(self) -> None:
        self._by_id: dict[str, Attribute] = {}
        self._by_group: dict[Hashable, list[Attribute]] = {}

    def add(self, group: Hashable, target: str, key: Any, value: Any) -> Attribute:
        """Add ``key = value`` for process ``target`` of workflow ``group``."""
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise AttributeProblem(f"an attribute key is text of 1 to {MAX_KEY_CHARS} characters")
        try:
            size = len(json.dumps(value))
        except (TypeError, ValueError) as exc:
            raise AttributeProblem(f"attribute {key!r}: the value must be JSON: {exc}") from exc
        if size > MAX_VALUE_BYTES:
            raise AttributeProblem(f"attribute {key!r}: the value is {size} bytes of JSON; "
                                  f"at most {MAX_VALUE_BYTES} are kept")
        attribute = Attribute(secrets.token_hex(16), target, key, value, time.time())
        self._by_id[attribute.attributeid] = attribute
        self._by_group.setdefault(group, []).append(attribute)
        return attribute

    def get(self, attribute_id: str) -> Attribute:
        found = self._by_id.get(attribute_id)
        if found is None:
            raise AttributeProblem(f"there is no attribute {attribute_id}")
        return found

    def of_group(self, group: Hashable) -> list[dict[str, Any]]:
        """Every attribute of a workflow, oldest first."""
        return [a.view() for a in self._by_group.get(group, ())]
