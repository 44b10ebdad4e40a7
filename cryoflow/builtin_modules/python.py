"""Calls a Python function: the module behind flow strings, workflow classes and tasks.

Nodes made from a flow string (``Workflow("a; b || c", a=fa, ...)``), a workflow
class, a function spec without an executor type, or a ``PythonTask`` run this module.
Their arguments name the callable (``package.module:function``) and carry the results
of their parents; see :mod:`cryoflow.pyapi.calls` for how the call is made. The output
is ``{"result": <return value>}`` plus the ``status``/``color``/``shape``/``label``/
``value`` keys of a returned dict, which the live view draws the node with.
"""

ccmodule = {
    "description": "Call a Python function and keep its return value as the result",
    "depends": [],
    "provides": [],
    "inputs": {
        "callable": "The function: 'package.module:function' or 'package.module:Class.method'",
        "path": "The sys.path folder to import it from (optional)",
        "parents": "The parent nodes whose results are passed on, in order",
        "args": "Positional arguments (optional)",
        "kwargs": "Keyword arguments (optional)",
        "env": "Environment variables set during the call (optional)",
    },
    "outputs": {
        "result": "The function's return value",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
    },
    "status": {},
}


def process_task(worker, task):
    """Import and call the function; return its result as the output."""
    from cryoflow.pyapi.calls import call_node

    return 100, call_node(task["args"], worker)
