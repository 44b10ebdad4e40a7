"""Test fixture: an input module that emits the items it is given, then stops."""

ccmodule = {
    "description": "Emit each of the given items as one pebble",
    "input_type": "singlerun",
    "inputs": {"items": "Items to emit", "src": "A path to emit"},
    "outputs": {"item": "The item", "fullpath": "A path"},
    "provides": ["Item"],
}


def start(handler, args, stop_event):
    for item in args.get("items", []):
        handler.onAdd({"item": item})
