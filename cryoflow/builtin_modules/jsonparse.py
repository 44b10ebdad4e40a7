"""Reads JSON from a file or a string; its keys become the outputs."""

import json
from pathlib import Path

from cryoflow.workers.args import local_path

ccmodule = {
    "description": "Parse a JSON file or JSON text; an object's keys become the outputs",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "A path or file:// URL of a JSON file, or JSON text (starting with { or [)",
    },
    "outputs": {
        "value": "The parsed value, when it is not an object",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
        "type": "admin",
    },
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    """Parse ``src``; an object is returned as the outputs, anything else as ``value``."""
    source = task["args"].get("src")
    if source is None:
        raise ValueError("jsonparse needs src (a JSON file or JSON text)")
    value = parse(source)
    return 100, value if isinstance(value, dict) else {"value": value}


def parse(source):
    """JSON text, a path to a JSON file, or an already parsed value."""
    if not isinstance(source, str):
        return source
    text = source.strip()
    if text[:1] in ("{", "["):
        return json.loads(text)
    path = Path(local_path(text))
    with path.open(encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
