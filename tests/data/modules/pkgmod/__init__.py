"""Test fixture: a module that is a package folder."""

ccmodule = {"description": "A package module", "inputs": {"x": "Anything"}, "outputs": {"y": "Y"}}


def process_task(worker, task):
    return 100, {"y": task["args"].get("x")}
