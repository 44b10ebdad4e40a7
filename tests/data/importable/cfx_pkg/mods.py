"""Test fixture: a module found by its dotted import name."""

ccmodule = {"description": "Imported by name", "inputs": {"n": "A number"}, "outputs": {"m": "n+1"}}


def process_task(worker, task):
    return 100, {"m": task["args"]["n"] + 1}
