"""Test fixture: a module that declares no inputs or outputs, so takes anything."""

ccmodule = {"description": "Accept any args"}


def process_task(worker, task):
    return 100, dict(task["args"])
