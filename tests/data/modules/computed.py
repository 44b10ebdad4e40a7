"""Test fixture: a module whose ccmodule is computed, so it must be imported."""

import os

IMPORTS = int(os.environ.get("CRYOFLOW_TEST_IMPORTS", "0")) + 1
os.environ["CRYOFLOW_TEST_IMPORTS"] = str(IMPORTS)

_INPUTS = {"a": "First", "b": "Second"}
ccmodule = {"description": "Computed", "inputs": dict(_INPUTS), "outputs": {"sum": "a + b"}}


def process_task(worker, task):
    return 100, {"sum": task["args"]["a"] + task["args"]["b"]}
