"""cryoflow: stream pebbles of work through workflow graphs."""

from typing import Any

from cryoflow.errors import CryoflowError

__version__ = "0.1.0"
__all__ = ["BaseWorkFlow", "CryoflowError", "Workflow", "__version__"]


def __getattr__(name: str) -> Any:
    """``Workflow`` and ``BaseWorkFlow`` load the Python API only when asked for."""
    if name in ("Workflow", "BaseWorkFlow"):
        from cryoflow.pyapi import workflow

        return getattr(workflow, name)
    raise AttributeError(f"module 'cryoflow' has no attribute {name!r}")
