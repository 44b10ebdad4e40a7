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
        "path": "The same as src (CryoCloud's name)",
    },
    "outputs": {
        "content": "The parsed value",
        "value": "The parsed value, when it is not an object",
    },
    "defaults": {
        "priority": 0,
        "runOn": "always",
    },
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    """Parse ``src`` (or ``path``): ``content`` is the value; an object's keys are also
    outputs of their own, anything else is also ``value``."""
    args = task["args"]
    source = args.get("src", args.get("path"))
    if source is None:
        raise ValueError("jsonparse needs src or path (a JSON file or JSON text)")
    value = parse(source)
    if isinstance(value, dict):
        return 100, {**value, "content": value}
    return 100, {"value": value, "content": value}


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
