"""Test fixture: a processing module with declared inputs, outputs and defaults."""

ccmodule = {
    "description": "Do some work on a file",
    "depends": [],
    "provides": ["Product"],
    "inputs": {
        "src": "Input file",
        "dst": "Output folder",
        "time": "Seconds to take",
        "program": "Program to run",
        "configFile": "Config file",
        "items": "A list of things",
    },
    "outputs": {"result": "ok or an error", "dst": "Output path", "product": "Product id"},
    "defaults": {"priority": 40, "runOn": "success", "bogus": 1},
    "status": {"progress": "0-100"},
}


def process_task(worker, task, cancel_event=None):
    return 100, {"result": "ok", "dst": task["args"].get("dst"), "product": "p"}
