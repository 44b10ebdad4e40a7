"""Where ``type: tempdir`` arguments live, shared by the worker runtime and the head."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path


def tempdir_path(base: str | None, workflow: str, pebble_id: int, tempdir_id: str | None) -> Path:
    """The folder for one tempdir id of one pebble: the same on every call."""
    root = Path(base) if base else Path(tempfile.gettempdir())
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", workflow).strip(".") or "_"
    return root / f"cryoflow-{safe}-{pebble_id}-{tempdir_id or 'tmp'}"


def remove_pebble_tempdirs(workflow: str, pebble_id: int, bases: Iterable[str | None]) -> None:
    """Remove every tempdir of ``pebble_id`` under the given bases (this host only)."""
    for base in bases:
        pattern = tempdir_path(base, workflow, pebble_id, "*")
        for folder in pattern.parent.glob(pattern.name):
            shutil.rmtree(folder, ignore_errors=True)
