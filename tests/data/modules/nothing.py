"""Test fixture: a Python file that is not a cryoflow module (no ccmodule)."""


def process_task(worker, task):
    return 100, None
