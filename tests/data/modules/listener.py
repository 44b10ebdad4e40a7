"""Test fixture: an input module with no declared outputs (its items are free-form)."""

ccmodule = {
    "description": "Accept posted items",
    "inputs": {"port": "TCP port", "schema": "JSON Schema for posts"},
}


def start(handler, args, stop_event):
    stop_event.wait()
