"""Input module: one pebble made of the workflow's options, then the workflow ends."""

ccmodule = {
    "description": "One pebble from the command line options; the workflow ends after it",
    "depends": [],
    "provides": ["Input"],
    "input_type": "singlerun",
    "inputs": {},
    "outputs": {},
    "defaults": {
        "priority": 50,
        "runOn": "always",
    },
    "status": {},
}


def start(handler, args, stop_event):
    """Hand ``args`` (the head passes the workflow's options) over as the one item."""
    handler.onAdd(dict(args))
